use super::*;
use crate::smtp::reply::parse_one;
use crate::smtp::{CommandKind, EnhancedCode, ReplyCode};

fn load(yaml: &str) -> Result<Loaded, RulesErrors> {
    RuleSet::from_sources(&[("rules.yaml".to_string(), yaml.to_string())])
}

fn set(yaml: &str) -> RuleSet {
    match load(yaml) {
        Ok(l) => l.rules,
        Err(e) => panic!("{e}"),
    }
}

fn errors(yaml: &str) -> Vec<RuleDiagnostic> {
    match load(yaml) {
        Ok(_) => panic!("expected errors"),
        Err(RulesErrors(e)) => e,
    }
}

fn reply(wire: &str) -> Reply {
    parse_one(wire.as_bytes()).unwrap().unwrap()
}

fn rcpt() -> SessionFacts<'static> {
    SessionFacts::new(CommandKind::Rcpt)
}

/// One rule with the given `when` and `then` bodies (flow YAML).
fn one_rule(when: &str, then: &str) -> String {
    format!("rules:\n  - id: r1\n    description: test\n    when: {when}\n    then: {then}\n")
}

fn assert_single(diags: &[RuleDiagnostic], line: usize, key: &str, needle: &str) {
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    assert_eq!(d.file, "rules.yaml");
    assert_eq!(d.line, Some(line), "{d}");
    assert_eq!(d.rule_id.as_deref(), Some("r1"), "{d}");
    assert_eq!(d.key.as_deref(), Some(key), "{d}");
    assert!(d.message.contains(needle), "{d}");
}

// ---- the built-in rules ----

#[test]
fn builtin_rules_load_without_errors_or_warnings() {
    let loaded = RuleSet::from_sources(&[(BUILTIN_NAME.to_string(), BUILTIN_YAML.to_string())])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let set = RuleSet::builtin();
    assert!(set.version().starts_with("builtin-"), "{}", set.version());
    assert!(!set.is_empty());
    assert!(
        set.rules()
            .all(|r| r.file() == BUILTIN_NAME && r.line() > 0)
    );
}

#[test]
fn builtin_examples_all_pass() {
    let set = RuleSet::builtin();
    let outcomes = set.run_examples();
    let failed: Vec<_> = outcomes.iter().filter(|o| !o.passed).collect();
    for f in &failed {
        eprintln!(
            "{}:{}: {}: {}: {}",
            f.file, f.line, f.rule, f.example, f.message
        );
    }
    assert!(failed.is_empty());
    assert!(outcomes.len() >= 30, "{} examples", outcomes.len());
    assert!(
        outcomes
            .iter()
            .any(|o| o.message.contains("does not match"))
    );
}

#[test]
fn builtin_rules_only_ever_match_530() {
    let set = RuleSet::builtin();
    for code in [250u16, 334, 354, 421, 450, 535, 550, 554] {
        let r = reply(&format!(
            "{code} 5.7.0 Authentication required; user unknown; blacklisted\r\n"
        ));
        assert_eq!(
            set.judge(&r, &rcpt()),
            Verdict::NoMatch,
            "code {code} must pass through"
        );
    }
}

#[test]
fn builtin_turns_a_tls_demand_over_a_plaintext_upstream_leg_into_451_for_the_operator() {
    // The demand is about replyfix's own leg to the upstream: the client
    // cannot fix it, the operator can; a temporary failure keeps mail queued.
    let set = RuleSet::builtin();
    let r = reply("530 5.7.0 Must issue a STARTTLS command first\r\n");
    for client_tls in [false, true] {
        let mut facts = SessionFacts::new(CommandKind::Mail);
        facts.client_tls = client_tls;
        let v = set.judge(&r, &facts);
        assert_eq!(v.rule(), Some("starttls-required-upstream-leg"));
        assert_eq!(v.action(), Some(Action::Remap));
        let seen = v.reply(&r);
        assert!(
            seen.raw().starts_with(
                b"451-4.7.0 Must issue a STARTTLS command first\r\n451 4.7.0 replyfix: "
            ),
            "{seen}"
        );
    }
    // Over a TLS upstream leg the client cannot act on it either: unchanged.
    let mut facts = SessionFacts::new(CommandKind::Mail);
    facts.upstream_tls = true;
    let v = set.judge(&r, &facts);
    assert_eq!(v.rule(), Some("starttls-required"));
    assert_eq!(v.reply(&r), &r);
}

#[test]
fn builtin_config_error_after_accepted_recipient_is_user_unknown() {
    let set = RuleSet::builtin();
    let r = reply(
        "530 5.7.1 The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.\r\n",
    );
    let mut facts = rcpt();
    assert_eq!(set.judge(&r, &facts).rule(), Some("config-error-ambiguous"));
    facts.recipients_accepted = 1;
    let v = set.judge(&r, &facts);
    assert_eq!(v.rule(), Some("config-error-after-accepted-recipient"));
    assert_eq!(v.reply(&r).code().get(), 550);
    assert_eq!(v.reply(&r).enhanced(), EnhancedCode::new(5, 1, 1));
}

// ---- load errors: each names file, line and rule id ----

#[test]
fn remap_to_250_is_rejected_with_file_line_and_id() {
    let yaml = "rules:\n  - id: r1\n    description: x\n    when: {code: 530}\n    then:\n      remap:\n        code: 250\n        enhanced: 2.0.0\n";
    let diags = errors(yaml);
    assert!(!diags.is_empty());
    let d = &diags[0];
    assert_eq!(
        d.to_string(),
        "rules.yaml:7:15: rule 'r1': then.remap.code: 250 is a success code; rules never produce 2xx or 3xx (docs/protocol.md W2)"
    );
}

#[test]
fn remap_to_3xx_and_421_are_rejected() {
    let d = errors(&one_rule(
        "{code: 530}",
        "{remap: {code: 354, enhanced: 5.0.0}}",
    ));
    assert!(d[0].message.contains("intermediate"), "{d:?}");
    let d = errors(&one_rule(
        "{code: 530}",
        "{remap: {code: 421, enhanced: 4.0.0}}",
    ));
    assert_single(&d, 5, "then.remap.code", "never produce 421");
}

#[test]
fn rewriting_rule_without_code_is_rejected_w2() {
    let d = errors(&one_rule(
        "{text: foo}",
        "{remap: {code: 550, enhanced: 5.1.1}}",
    ));
    assert_single(&d, 5, "then.remap", "must give when.code");
}

#[test]
fn rewriting_rule_that_can_match_2xx_3xx_or_421_is_rejected_w2() {
    for code in ["\"2xx\"", "[530, 354]", "421", "\"4xx\""] {
        let d = errors(&one_rule(
            &format!("{{code: {code}}}"),
            "{remap: {code: 550, enhanced: 5.1.1}}",
        ));
        assert_single(&d, 5, "then.remap", "rules never touch 2xx, 3xx or 421");
    }
}

#[test]
fn keep_rule_may_match_any_code() {
    let s = set(&one_rule("{}", "{keep: true}"));
    let r = reply("250 ok\r\n");
    assert_eq!(s.judge(&r, &rcpt()), Verdict::Keep { rule: "r1".into() });
}

#[test]
fn annotate_on_rule_that_can_match_non_failures_is_rejected() {
    let d = errors(&one_rule("{code: \"xxx\"}", "{annotate: hint}"));
    assert_single(
        &d,
        5,
        "then.annotate",
        "annotations go on 4xx/5xx replies only",
    );
}

#[test]
fn enhanced_class_must_equal_code_class_w1() {
    let d = errors(&one_rule(
        "{code: 530}",
        "{remap: {code: 454, enhanced: 5.7.0}}",
    ));
    assert_single(
        &d,
        5,
        "then.remap.enhanced",
        "class 5 but the code 454 has class 4",
    );
}

#[test]
fn remap_without_enhanced_is_rejected_w1() {
    let d = errors(&one_rule("{code: 530}", "{remap: {code: 550}}"));
    assert_single(&d, 5, "then.remap.enhanced", "change together");
}

#[test]
fn replacement_text_with_crlf_or_nul_is_rejected_w3() {
    for bad in ["\"a\\r\\nb\"", "\"a\\nb\"", "\"a\\0b\""] {
        let d = errors(&one_rule(
            "{code: 530}",
            &format!("{{remap: {{code: 550, enhanced: 5.1.1, text: {bad}}}}}"),
        ));
        assert_single(&d, 5, "then.remap.text", "CR, LF or NUL");
        let d = errors(&one_rule("{code: 530}", &format!("{{annotate: {bad}}}")));
        assert_single(&d, 5, "then.annotate", "CR, LF or NUL");
    }
}

#[test]
fn text_line_over_512_octets_is_rejected_w3() {
    // 550 5.1.1 + space + text + CRLF: 3+1+5+1+500+2 = 512 fits, 501 does not.
    let ok = "a".repeat(500);
    set(&one_rule(
        "{code: 530}",
        &format!("{{remap: {{code: 550, enhanced: 5.1.1, text: {ok}}}}}"),
    ));
    let long = "a".repeat(501);
    let d = errors(&one_rule(
        "{code: 530}",
        &format!("{{remap: {{code: 550, enhanced: 5.1.1, text: {long}}}}}"),
    ));
    assert_single(&d, 5, "then.remap.text", "513 octets");
}

#[test]
fn invalid_regex_is_rejected_with_its_line() {
    let d = errors(&one_rule(
        "{code: 530, text: \"(unclosed\"}",
        "{keep: true}",
    ));
    assert_single(&d, 4, "when.text", "invalid regex");
}

#[test]
fn unknown_context_is_rejected() {
    let d = errors(&one_rule(
        "{code: 530, command: [rcpt, rcpt_to]}",
        "{keep: true}",
    ));
    assert_single(&d, 4, "when.command", "unknown command context 'rcpt_to'");
}

#[test]
fn bad_cidr_is_rejected() {
    let d = errors(&one_rule(
        "{code: 530, client: [192.0.2.0/24, 300.1.1.1/8]}",
        "{keep: true}",
    ));
    assert_single(
        &d,
        4,
        "when.client",
        "'300.1.1.1/8' is not an IP address or CIDR",
    );
}

#[test]
fn unknown_keys_are_rejected_at_their_line() {
    let yaml = "rules:\n  - id: r1\n    description: x\n    when:\n      code: 530\n      txt: foo\n    then: {keep: true}\n";
    let d = errors(yaml);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].line, Some(6));
    assert_eq!(d[0].column, Some(7));
    assert_eq!(d[0].key.as_deref(), Some("when.txt"));
    assert_eq!(d[0].rule_id.as_deref(), Some("r1"));
    assert!(d[0].message.contains("unknown key"));
}

#[test]
fn duplicate_ids_across_files_are_rejected() {
    let a = one_rule("{code: 530}", "{keep: true}");
    let e =
        RuleSet::from_sources(&[("a.yaml".into(), a.clone()), ("b.yaml".into(), a)]).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].file, "b.yaml");
    assert_eq!(e.0[0].line, Some(2));
    assert_eq!(e.0[0].rule_id.as_deref(), Some("r1"));
    assert!(e.0[0].message.contains("first defined at a.yaml:2"), "{e}");
}

#[test]
fn all_errors_are_reported_not_just_the_first() {
    let yaml = "rules:\n  - id: r1\n    description: x\n    when: {code: 999}\n    then: {keep: true}\n  - id: r2\n    description: y\n    when: {code: 530, command: nope}\n    then: {remap: {code: 250, enhanced: 2.0.0}}\n";
    let d = errors(yaml);
    let ids: Vec<_> = d
        .iter()
        .map(|d| (d.rule_id.as_deref().unwrap(), d.line.unwrap()))
        .collect();
    assert_eq!(ids, vec![("r1", 4), ("r2", 8), ("r2", 9)], "{d:#?}");
}

#[test]
fn yaml_syntax_error_names_file_and_line() {
    let d = errors("rules:\n  - id: [unclosed\n");
    assert_eq!(d[0].file, "rules.yaml");
    assert!(d[0].line.is_some());
    assert!(d[0].message.starts_with("invalid YAML"));
}

#[test]
fn missing_required_keys_are_named() {
    let d = errors("rules:\n  - when: {}\n");
    let keys: Vec<_> = d.iter().filter_map(|d| d.key.as_deref()).collect();
    assert_eq!(keys, vec!["id", "description", "then"]);
}

#[test]
fn keep_combined_with_remap_is_rejected() {
    let d = errors(&one_rule(
        "{code: 530}",
        "{keep: true, remap: {code: 550, enhanced: 5.1.1}}",
    ));
    assert!(
        d.iter().any(|d| d.key.as_deref() == Some("then.keep")),
        "{d:?}"
    );
}

#[test]
fn unknown_template_placeholder_is_rejected() {
    let d = errors(&one_rule("{code: 530}", "{annotate: \"see {txt}\"}"));
    assert_single(&d, 5, "then.annotate", "unknown placeholder '{txt}'");
}

#[test]
fn remap_from_4xx_to_5xx_is_a_warning_not_an_error() {
    let l = load(&one_rule(
        "{code: [450, 530]}",
        "{remap: {code: 550, enhanced: 5.1.1}}",
    ))
    .unwrap();
    assert_eq!(l.warnings.len(), 1);
    assert!(l.warnings[0].message.contains("turns retries into bounces"));
    assert_eq!(l.warnings[0].key.as_deref(), Some("then.remap.code"));
    let l = load(&one_rule(
        "{code: 530}",
        "{remap: {code: 452, enhanced: 4.2.2}}",
    ))
    .unwrap();
    assert!(l.warnings.is_empty());
}

#[test]
fn empty_file_is_an_error_and_empty_list_is_not() {
    assert!(load("").is_err());
    assert!(set("rules: []\n").is_empty());
}

// ---- matching ----

#[test]
fn code_list_and_patterns_match() {
    let s = set(&one_rule(
        "{code: [\"53x\", 554]}",
        "{remap: {code: 550, enhanced: 5.7.1}}",
    ));
    assert_eq!(s.judge(&reply("535 x\r\n"), &rcpt()).rule(), Some("r1"));
    assert_eq!(s.judge(&reply("554 x\r\n"), &rcpt()).rule(), Some("r1"));
    assert_eq!(s.judge(&reply("550 x\r\n"), &rcpt()), Verdict::NoMatch);
}

#[test]
fn enhanced_pattern_matches_first_line_code() {
    let s = set(&one_rule(
        "{code: 530, enhanced: \"5.7.*\"}",
        "{keep: true}",
    ));
    assert!(
        s.judge(&reply("530 5.7.57 x\r\n"), &rcpt())
            .rule()
            .is_some()
    );
    assert_eq!(
        s.judge(&reply("530 5.5.1 x\r\n"), &rcpt()),
        Verdict::NoMatch
    );
    assert_eq!(
        s.judge(&reply("530 no code\r\n"), &rcpt()),
        Verdict::NoMatch
    );
}

#[test]
fn text_is_case_insensitive_unless_asked() {
    let s = set(&one_rule(
        "{code: 530, text: \"user unknown\"}",
        "{keep: true}",
    ));
    assert!(
        s.judge(&reply("530 USER UNKNOWN\r\n"), &rcpt())
            .rule()
            .is_some()
    );
    let s = set(&one_rule(
        "{code: 530, text: \"user unknown\", case_sensitive: true}",
        "{keep: true}",
    ));
    assert_eq!(
        s.judge(&reply("530 USER UNKNOWN\r\n"), &rcpt()),
        Verdict::NoMatch
    );
}

#[test]
fn text_matches_across_lines_joined_by_one_space() {
    let s = set(&one_rule(
        "{code: 530, text: \"first second\"}",
        "{keep: true}",
    ));
    assert!(
        s.judge(&reply("530-5.7.0 first\r\n530 5.7.0 second\r\n"), &rcpt())
            .rule()
            .is_some()
    );
}

#[test]
fn invalid_utf8_text_is_matched_lossily_p5() {
    let s = set(&one_rule(
        "{code: 530, text: \"no such user\"}",
        "{keep: true}",
    ));
    let r = parse_one(b"530 \xff\xfe no such user\r\n")
        .unwrap()
        .unwrap();
    assert!(s.judge(&r, &rcpt()).rule().is_some());
}

type FactChange = Box<dyn Fn(&mut SessionFacts<'static>)>;

#[test]
fn session_facts_conditions_must_all_hold() {
    let yaml = one_rule(
        "{code: 530, command: rcpt, authenticated: false, client_tls: true, upstream_tls: false, recipients_accepted: {min: 1, max: 2}, client: [192.0.2.0/24], listener: [submission], upstream: relay}",
        "{keep: true}",
    );
    let s = set(&yaml);
    let r = reply("530 x\r\n");
    let mut f = rcpt();
    f.client_tls = true;
    f.recipients_accepted = 1;
    f.client = Some("192.0.2.9".parse().unwrap());
    f.listener = "submission";
    f.upstream = "relay";
    assert!(s.judge(&r, &f).rule().is_some());
    let variants: Vec<FactChange> = vec![
        Box::new(|f| f.command = CommandKind::Mail),
        Box::new(|f| f.authenticated = true),
        Box::new(|f| f.client_tls = false),
        Box::new(|f| f.upstream_tls = true),
        Box::new(|f| f.recipients_accepted = 0),
        Box::new(|f| f.recipients_accepted = 3),
        Box::new(|f| f.client = Some("198.51.100.1".parse().unwrap())),
        Box::new(|f| f.client = None),
        Box::new(|f| f.listener = "smtp"),
        Box::new(|f| f.upstream = "other"),
    ];
    for (i, change) in variants.iter().enumerate() {
        let mut g = f;
        change(&mut g);
        assert_eq!(s.judge(&r, &g), Verdict::NoMatch, "variant {i}");
    }
}

#[test]
fn first_match_wins_within_and_across_files() {
    let a =
        "rules:\n  - id: a1\n    description: x\n    when: {code: 530}\n    then: {keep: true}\n"
            .to_string();
    let b = "rules:\n  - id: b1\n    description: y\n    when: {code: 530}\n    then: {remap: {code: 550, enhanced: 5.1.1}}\n".to_string();
    let s = RuleSet::from_sources(&[("a".into(), a.clone()), ("b".into(), b.clone())])
        .unwrap()
        .rules;
    assert_eq!(s.judge(&reply("530 x\r\n"), &rcpt()).rule(), Some("a1"));
    let s = RuleSet::from_sources(&[("b".into(), b), ("a".into(), a)])
        .unwrap()
        .rules;
    assert_eq!(s.judge(&reply("530 x\r\n"), &rcpt()).rule(), Some("b1"));
    let ids: Vec<_> = s.rules().map(Rule::id).collect();
    assert_eq!(ids, vec!["b1", "a1"]);
}

#[test]
fn multiline_remap_rewrites_every_line_w1() {
    let s = set(&one_rule(
        "{code: 530}",
        "{remap: {code: 550, enhanced: 5.1.1}}",
    ));
    let r = reply("530-5.7.0 first\r\n530-second\r\n530 5.7.0 third\r\n");
    let v = s.judge(&r, &rcpt());
    assert_eq!(
        v.reply(&r).raw().as_ref(),
        b"550-5.1.1 first\r\n550-5.1.1 second\r\n550 5.1.1 third\r\n"
    );
    assert_eq!(v.action(), Some(Action::Remap));
}

#[test]
fn remap_with_text_gives_one_line_and_templates_use_the_original() {
    let s = set(&one_rule(
        "{code: 530}",
        "{remap: {code: 550, enhanced: 5.1.1, text: \"was {code} {enhanced}: {text} {{literal}}\"}}",
    ));
    let r = reply("530-5.7.0 first\r\n530 5.7.0 second\r\n");
    let v = s.judge(&r, &rcpt());
    assert_eq!(
        v.reply(&r).raw().as_ref(),
        b"550 5.1.1 was 530 5.7.0: first second {literal}\r\n"
    );
}

#[test]
fn template_expansion_is_cut_to_512_octets() {
    let s = set(&one_rule(
        "{code: 530}",
        "{remap: {code: 550, enhanced: 5.1.1, text: \"{text}\"}}",
    ));
    let long = format!("530 {}\r\n", "x".repeat(1500));
    let v = s.judge(&reply(&long), &rcpt());
    assert_eq!(v.reply(&reply(&long)).raw().len(), 512);
}

#[test]
fn remap_with_annotation_appends_a_line_with_the_new_codes() {
    let s = set(&one_rule(
        "{code: 530}",
        "{remap: {code: 554, enhanced: 5.7.1}, annotate: \"why: {code}\"}",
    ));
    let r = reply("530 blocked\r\n");
    let v = s.judge(&r, &rcpt());
    assert_eq!(
        v.reply(&r).raw().as_ref(),
        b"554-5.7.1 blocked\r\n554 5.7.1 why: 530\r\n"
    );
}

#[test]
fn annotate_keeps_code_and_adds_one_line() {
    let s = set(&one_rule("{code: 530}", "{annotate: hint}"));
    let r = reply("530 5.7.0 Authentication required\r\n");
    let v = s.judge(&r, &rcpt());
    assert_eq!(v.action(), Some(Action::Annotate));
    assert_eq!(
        v.reply(&r).raw().as_ref(),
        b"530-5.7.0 Authentication required\r\n530 5.7.0 hint\r\n"
    );
}

#[test]
fn judge_never_rewrites_protected_codes_even_past_validation() {
    // Build a rule set whose rule slipped past validation.
    let mut s = set(&one_rule(
        "{code: 530}",
        "{remap: {code: 550, enhanced: 5.1.1}}",
    ));
    for code in [250u16, 354, 421] {
        s.rules[0].when.codes.as_mut().unwrap().insert(code);
        s.codes.insert(code);
    }
    for wire in ["250 ok\r\n", "354 go\r\n", "421 bye\r\n"] {
        assert_eq!(s.judge(&reply(wire), &rcpt()), Verdict::NoMatch, "{wire}");
    }
    assert_eq!(
        s.judge(&reply("530 x\r\n"), &rcpt())
            .reply(&reply("530 x\r\n"))
            .code(),
        ReplyCode::new(550).unwrap()
    );
}

#[test]
fn codes_no_rule_can_match_skip_the_rules() {
    let s = set(&one_rule("{code: 530, text: x}", "{keep: true}"));
    assert!(s.codes.contains(530));
    assert!(!s.codes.contains(250));
    assert!(!s.codes.contains(531));
}

#[test]
fn version_is_stable_and_depends_on_the_sources() {
    let a = set(&one_rule("{code: 530}", "{keep: true}"));
    let b = set(&one_rule("{code: 530}", "{keep: true}"));
    let c = set(&one_rule("{code: 531}", "{keep: true}"));
    assert_eq!(a.version(), b.version());
    assert_ne!(a.version(), c.version());
    assert!(a.version().starts_with("rules-") && a.version().len() == "rules-".len() + 12);
}

#[test]
fn load_paths_reads_folders_sorted_and_reports_missing_files() {
    let dir = std::env::temp_dir().join(format!("replyfix-rules-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rule = |id: &str| {
        format!(
            "rules:\n  - id: {id}\n    description: x\n    when: {{code: 530}}\n    then: {{keep: true}}\n"
        )
    };
    std::fs::write(dir.join("20-b.yml"), rule("b")).unwrap();
    std::fs::write(dir.join("10-a.yaml"), rule("a")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not rules").unwrap();
    let s = RuleSet::load_paths(std::slice::from_ref(&dir))
        .unwrap()
        .rules;
    let ids: Vec<_> = s.rules().map(Rule::id).collect();
    assert_eq!(ids, vec!["a", "b"]);
    assert!(s.rules().next().unwrap().file().ends_with("10-a.yaml"));
    let e = RuleSet::load_paths(&[dir.join("missing.yaml")]).unwrap_err();
    assert!(e.0[0].message.starts_with("cannot read"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- examples ----

#[test]
fn passing_and_failing_examples_are_reported_with_expected_and_got() {
    let yaml = "rules:
  - id: r1
    description: x
    when: {code: 530, text: unknown}
    then: {remap: {code: 550, enhanced: 5.1.1}}
    examples:
      - reply: \"530 user unknown\"
        command: rcpt
        expect: 550 5.1.1
      - reply: \"530 user unknown\"
        expect: 554 5.7.1
      - reply: \"530 fine\"
        expect: 550 5.1.1
      - reply: \"530 user unknown\"
        expect: no_match
      - reply: \"530 fine\"
        expect: no_match
";
    let out = set(yaml).run_examples();
    let passed: Vec<_> = out.iter().map(|o| o.passed).collect();
    assert_eq!(passed, vec![true, false, false, false, true]);
    assert_eq!(out[0].line, 7);
    assert_eq!(out[0].file, "rules.yaml");
    assert_eq!(&*out[0].rule, "r1");
    assert!(out[0].example.contains("at rcpt"), "{}", out[0].example);
    assert!(
        out[1].message.contains("expected remap to 554 5.7.1"),
        "{}",
        out[1].message
    );
    assert!(
        out[1].message.contains("550-") || out[1].message.contains("550 5.1.1"),
        "{}",
        out[1].message
    );
    assert!(
        out[2].message.contains("no rule matched"),
        "{}",
        out[2].message
    );
    assert!(
        out[3].message.contains("expected no match"),
        "{}",
        out[3].message
    );
}

#[test]
fn example_shadowed_by_an_earlier_rule_fails() {
    let yaml = "rules:
  - id: first
    description: x
    when: {code: 530}
    then: {keep: true}
  - id: second
    description: y
    when: {code: 530}
    then: {annotate: hint}
    examples:
      - reply: \"530 x\"
        expect: annotate
";
    let out = set(yaml).run_examples();
    assert!(!out[0].passed);
    assert!(
        out[0].message.contains("rule 'first' kept"),
        "{}",
        out[0].message
    );
}

#[test]
fn malformed_example_is_a_load_error() {
    let yaml = "rules:
  - id: r1
    description: x
    when: {code: 530}
    then: {keep: true}
    examples:
      - reply: \"no code here\"
        expect: maybe
";
    let d = errors(yaml);
    let keys: Vec<_> = d
        .iter()
        .map(|d| (d.key.clone().unwrap(), d.line.unwrap()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("examples[0].reply".to_string(), 7),
            ("examples[0].expect".to_string(), 8)
        ]
    );
}

#[test]
fn diagnostic_display_leaves_out_unknown_parts() {
    let d = RuleDiagnostic {
        file: "x.yaml".into(),
        line: None,
        column: None,
        rule_id: None,
        key: None,
        message: "cannot read".into(),
    };
    assert_eq!(d.to_string(), "x.yaml: cannot read");
    let e = RulesErrors(vec![d.clone(), d]);
    assert_eq!(
        e.to_string(),
        "2 errors in rules\n  x.yaml: cannot read\n  x.yaml: cannot read"
    );
}

#[test]
fn rule_set_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<RuleSet>();
    check::<Verdict>();
}
