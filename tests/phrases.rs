//! The built-in rules on real wording (docs/rules.md "Accuracy").
//!
//! Real reply texts of every kind of refusal — the diagnostic texts of
//! sisimai's real bounces (`tests/fixtures/phrases/bounces.yaml`, labelled
//! with sisimai's reasons) and the labelled replies of other codes in the
//! corpus (`tests/fixtures/corpus/dev.yaml`) — are re-coded to `530`, the
//! way a misbehaving server sends them, once keeping their enhanced code and
//! once without it, and judged by the built-in rules in the command context
//! the reply answered. Each must be remapped to the class its label says.
//! Every legitimate "authenticate first" / "TLS first" text (the corpus's,
//! and `tests/fixtures/phrases/legit.yaml`), re-coded the same way, must
//! stay a 530; one asking for a stronger login or TLS also after a
//! successful AUTH.
//!
//! Prints the accuracy per class (run with `--nocapture`) and fails below
//! 90% overall or on any legitimate 530 remapped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use replyfix::rules::{Action, RuleSet, SessionFacts, Verdict};
use replyfix::smtp::reply::parse_one;
use replyfix::smtp::{CommandKind, EnhancedCode, Reply};
use serde::Deserialize;

/// The least share of re-coded real texts mapped to their class.
const MIN_ACCURACY: f64 = 0.90;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn read_fixture(rel: &str) -> String {
    let path = fixture(rel);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} is missing: {e}", path.display()))
}

// ------------------------------------------------------------ inputs

#[derive(Deserialize)]
struct Bounces {
    items: Vec<BounceItem>,
}

#[derive(Deserialize)]
struct BounceItem {
    bounce: String,
    recipient: u32,
    reason: String,
    command: String,
    reply: Option<String>,
}

#[derive(Deserialize)]
struct Corpus {
    items: Vec<CorpusItem>,
}

#[derive(Deserialize)]
struct CorpusItem {
    id: String,
    text: String,
    code: String,
    command: String,
    tls: Option<bool>,
    authenticated: Option<bool>,
    label: String,
}

#[derive(Deserialize)]
struct Legit {
    items: Vec<LegitItem>,
}

#[derive(Deserialize)]
struct LegitItem {
    reply: String,
    command: String,
    kind: String,
}

/// What a re-coded text must become.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    /// 550 with 5.1.x: the recipient address does not exist.
    UserUnknown,
    /// 550/556 with 5.1.x (not 5.1.8): the recipient's domain does not
    /// exist or accepts no mail.
    DomainUnknown,
    /// 552 5.2.2 (or 452 4.2.2).
    MailboxFull,
    /// 550 5.2.1 (mailbox disabled) or 550 5.1.x.
    MailboxDisabled,
    /// 550/554 with 5.7.x: the sending host is refused.
    Blocked,
    /// 550/554 with 5.7.x.
    RelayDenied,
    /// 550/553 with 5.1.x or 5.7.x: the sender address is refused.
    SenderRejected,
    /// 550/554 with 5.7.x: content, SPF/DKIM/DMARC or local policy.
    Policy,
    /// A recipient-side filter: UserUnknown's or Policy's outcome.
    Filtered,
    /// An unauthenticated sender or an access refusal: kept as a 530, or
    /// Blocked's outcome.
    Security,
    /// 535 5.7.8: the credentials were wrong (answering AUTH).
    AuthFailed,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::UserUnknown => "user_unknown",
            Class::DomainUnknown => "domain_unknown",
            Class::MailboxFull => "mailbox_full",
            Class::MailboxDisabled => "mailbox_disabled",
            Class::Blocked => "blocked",
            Class::RelayDenied => "relay_denied",
            Class::SenderRejected => "sender_rejected",
            Class::Policy => "policy",
            Class::Filtered => "filtered",
            Class::Security => "security",
            Class::AuthFailed => "auth_failed",
        }
    }

    /// Does what the client sees fit this class?
    fn fits(self, verdict: &Verdict, seen: &Reply) -> bool {
        let remapped = verdict.action() == Some(Action::Remap);
        let code = seen.code().get();
        let e = seen.enhanced();
        let is =
            |class: u8, subject: u16| e.is_some_and(|e| (e.class, e.subject) == (class, subject));
        let detail = |d: u16| e.is_some_and(|e| e.detail == d);
        let five_seven = matches!(code, 550 | 554) && is(5, 7);
        match self {
            Class::UserUnknown => remapped && code == 550 && is(5, 1) && !detail(8),
            Class::DomainUnknown => remapped && matches!(code, 550 | 556) && is(5, 1) && !detail(8),
            Class::MailboxFull => {
                remapped
                    && ((code == 552 && is(5, 2) && detail(2))
                        || (code == 452 && is(4, 2) && detail(2)))
            }
            Class::MailboxDisabled => {
                remapped && code == 550 && ((is(5, 2) && detail(1)) || (is(5, 1) && !detail(8)))
            }
            Class::Blocked | Class::RelayDenied | Class::Policy => remapped && five_seven,
            Class::SenderRejected => {
                remapped && matches!(code, 550 | 553) && (is(5, 1) || is(5, 7))
            }
            Class::Filtered => {
                Class::UserUnknown.fits(verdict, seen) || Class::Policy.fits(verdict, seen)
            }
            Class::Security => !remapped || five_seven,
            Class::AuthFailed => remapped && code == 535 && is(5, 7) && detail(8),
        }
    }
}

/// sisimai's reasons (docs/rules.md "Accuracy" says why each maps so), or
/// why a reason has no class.
fn class_of_reason(reason: &str) -> Result<Class, &'static str> {
    Ok(match reason {
        "userunknown" | "hasmoved" => Class::UserUnknown,
        "hostunknown" | "notaccept" => Class::DomainUnknown,
        "mailboxfull" => Class::MailboxFull,
        "suspend" => Class::MailboxDisabled,
        "blocked" | "badreputation" | "requireptr" => Class::Blocked,
        "norelaying" => Class::RelayDenied,
        "rejected" => Class::SenderRejected,
        "policyviolation" | "spamdetected" | "virusdetected" | "contenterror"
        | "notcompliantrfc" | "authfailure" => Class::Policy,
        "filtered" => Class::Filtered,
        "securityerror" => Class::Security,
        "expired" | "networkerror" | "systemerror" | "mailererror" | "onhold" | "undefined" => {
            return Err("delivery state or an undefined failure, not a refusal the rules can name");
        }
        "toomanyconn" | "speeding" => {
            return Err("a rate limit: its right code is transient, which a 5xx 530 does not say");
        }
        "exceedlimit" | "mesgtoobig" | "systemfull" => {
            return Err("a size or capacity limit: no 530 rule class");
        }
        "syntaxerror" | "failedstarttls" => {
            return Err("a protocol failure of the sending side, not of the 530's meaning");
        }
        "feedback" | "delivered" => return Err("not a failure"),
        _ => return Err("a reason this test does not know"),
    })
}

/// The corpus's labels (its README), or why a label has no class here.
fn class_of_label(label: &str) -> Result<Class, &'static str> {
    Ok(match label {
        "user_unknown" => Class::UserUnknown,
        "blocked" => Class::Blocked,
        "relay_denied" => Class::RelayDenied,
        "sender_rejected" => Class::SenderRejected,
        "policy" => Class::Policy,
        "mailbox_full" => Class::MailboxFull,
        "auth_failed" => Class::AuthFailed,
        _ => return Err("'other': no single class"),
    })
}

// ------------------------------------------------------------ re-coding

/// A real text split into lines, each without its reply code, with the
/// enhanced code the first line carried (when it had one).
struct Text {
    lines: Vec<String>,
    enhanced: Option<EnhancedCode>,
}

fn split_text(text: &str) -> Text {
    let mut lines = Vec::new();
    let mut enhanced = None;
    for (i, raw) in text.split(" | ").enumerate() {
        let b = raw.as_bytes();
        let mut body = raw;
        if b.len() >= 3
            && b[..3].iter().all(u8::is_ascii_digit)
            && matches!(b.get(3), None | Some(b' ' | b'-' | b':'))
        {
            body = raw.get(4..).unwrap_or("").trim_start();
        }
        if let Some((e, used)) = EnhancedCode::parse_prefix(body.as_bytes()) {
            if i == 0 {
                enhanced = Some(e);
            }
            body = body[used..].trim_start();
        }
        lines.push(body.to_string());
    }
    Text { lines, enhanced }
}

/// The text as a 530, every line with `enhanced` when given. A class-4
/// enhanced code becomes class 5: a 530 is permanent (W1).
fn recode(text: &Text, enhanced: Option<EnhancedCode>) -> Reply {
    let enhanced = enhanced.map(|e| EnhancedCode { class: 5, ..e });
    let mut wire = String::new();
    let n = text.lines.len();
    for (i, line) in text.lines.iter().enumerate() {
        let sep = if i + 1 < n { '-' } else { ' ' };
        match enhanced {
            Some(e) => writeln!(wire, "530{sep}{e} {line}\r").unwrap(),
            None => writeln!(wire, "530{sep}{line}\r").unwrap(),
        }
    }
    match parse_one(wire.as_bytes()) {
        Ok(Some(r)) => r,
        other => panic!("cannot build a reply from {wire:?}: {other:?}"),
    }
}

fn command(s: &str) -> CommandKind {
    s.parse().unwrap_or(CommandKind::Other)
}

// ------------------------------------------------------------ cases

/// One re-coded text to judge.
struct Case {
    source: String,
    class: Class,
    facts: (CommandKind, bool, bool),
    text: Text,
}

fn bounce_cases(excluded: &mut BTreeMap<String, (u32, &'static str)>) -> Vec<Case> {
    let bounces: Bounces =
        serde_saphyr::from_str(&read_fixture("phrases/bounces.yaml")).expect("bounces.yaml parses");
    assert!(
        bounces.items.len() >= 300,
        "bounces.yaml has {} items",
        bounces.items.len()
    );
    let mut cases = Vec::new();
    for item in bounces.items {
        let Some(reply) = item.reply.filter(|r| !r.trim().is_empty()) else {
            excluded
                .entry(format!("bounce:{}", item.reason))
                .or_insert((0, "no text"))
                .0 += 1;
            continue;
        };
        match class_of_reason(&item.reason) {
            Ok(class) => cases.push(Case {
                source: format!("{}#{} [{}]", item.bounce, item.recipient, item.reason),
                class,
                facts: (command(&item.command), false, false),
                text: split_text(&reply),
            }),
            Err(why) => {
                excluded
                    .entry(format!("bounce:{}", item.reason))
                    .or_insert((0, why))
                    .0 += 1
            }
        }
    }
    cases
}

fn corpus() -> Corpus {
    serde_saphyr::from_str(&read_fixture("corpus/dev.yaml")).expect("corpus parses")
}

fn corpus_cases(
    corpus: &Corpus,
    excluded: &mut BTreeMap<String, (u32, &'static str)>,
) -> Vec<Case> {
    let mut cases = Vec::new();
    for item in &corpus.items {
        if matches!(item.label.as_str(), "auth_required" | "starttls_required") {
            continue; // the legitimate ones: see legit_cases
        }
        if item.code.starts_with('2') {
            excluded
                .entry("corpus:success".into())
                .or_insert((0, "a success reply"))
                .0 += 1;
            continue;
        }
        match class_of_label(&item.label) {
            Ok(class) => {
                let tls = item.tls.unwrap_or(false);
                cases.push(Case {
                    source: format!("corpus {} [{}] {}", item.id, item.label, item.code),
                    class,
                    facts: (
                        command(&item.command),
                        tls,
                        item.authenticated.unwrap_or(false),
                    ),
                    text: split_text(&item.text),
                })
            }
            Err(why) => {
                excluded
                    .entry(format!("corpus:{}", item.label))
                    .or_insert((0, why))
                    .0 += 1
            }
        }
    }
    cases
}

/// A legitimate text and where it is judged.
struct LegitCase {
    source: String,
    command: CommandKind,
    tls: bool,
    /// Also judged after a successful AUTH (at MAIL when it answered AUTH):
    /// a stronger login or TLS is still the remedy then.
    after_login: bool,
    /// A demand for TLS: about replyfix's own upstream leg. Legitimate (and
    /// kept) over a TLS upstream leg; over a plaintext one it must become
    /// the operator's temporary `451 4.7.0` (docs/rules.md, "TLS demanded
    /// by the upstream").
    tls_demand: bool,
    text: Text,
}

fn legit_cases(corpus: &Corpus) -> Vec<LegitCase> {
    let mut out = Vec::new();
    for item in &corpus.items {
        if matches!(item.label.as_str(), "auth_required" | "starttls_required") {
            out.push(LegitCase {
                source: format!("corpus {} [{}]", item.id, item.label),
                command: command(&item.command),
                tls: item.tls.unwrap_or(false),
                after_login: false,
                tls_demand: item.label == "starttls_required",
                text: split_text(&item.text),
            });
        }
    }
    let legit: Legit =
        serde_saphyr::from_str(&read_fixture("phrases/legit.yaml")).expect("legit.yaml parses");
    for item in legit.items {
        let after_login = match item.kind.as_str() {
            "auth_required" => false,
            "stronger_auth" | "starttls_required" => true,
            other => panic!("legit.yaml: unknown kind {other}"),
        };
        out.push(LegitCase {
            source: format!("legit.yaml [{}] {}", item.kind, item.reply),
            command: command(&item.command),
            tls: false,
            after_login,
            tls_demand: item.kind == "starttls_required",
            text: split_text(&item.reply),
        });
    }
    out
}

/// `CODE ENHANCED` of what the client sees.
fn outcome(r: &Reply) -> String {
    match r.enhanced() {
        Some(e) => format!("{} {e}", r.code()),
        None => r.code().to_string(),
    }
}

fn facts(command: CommandKind, tls: bool, authenticated: bool) -> SessionFacts<'static> {
    let mut f = SessionFacts::new(command);
    f.client_tls = tls;
    f.upstream_tls = tls;
    f.authenticated = authenticated;
    f
}

#[test]
fn real_refusal_texts_recoded_to_530_map_to_their_class_and_legitimate_530s_stay() {
    let rules = RuleSet::builtin();
    let corpus = corpus();
    let mut excluded = BTreeMap::new();
    let mut cases = bounce_cases(&mut excluded);
    cases.extend(corpus_cases(&corpus, &mut excluded));

    // class -> [with enhanced: (n, right), without: (n, right)]
    let mut table: BTreeMap<Class, [(u32, u32); 2]> = BTreeMap::new();
    let mut wrong = Vec::new();
    for case in &cases {
        let (cmd, tls, auth) = case.facts;
        let f = facts(cmd, tls, auth);
        let variants: &[(usize, Option<EnhancedCode>)] = match case.text.enhanced {
            Some(e) => &[(0, Some(e)), (1, None)],
            None => &[(1, None)],
        };
        for &(col, enhanced) in variants {
            let reply = recode(&case.text, enhanced);
            let verdict = rules.judge(&reply, &f);
            let seen = verdict.reply(&reply);
            let right = case.class.fits(&verdict, seen);
            let cell = &mut table.entry(case.class).or_default()[col];
            cell.0 += 1;
            cell.1 += u32::from(right);
            if !right {
                wrong.push(format!(
                    "{:<16} {} at {cmd}: {} -> {:?}: {}",
                    case.class.name(),
                    case.source,
                    reply.text_lossy(" | "),
                    verdict.rule(),
                    outcome(seen),
                ));
            }
        }
    }

    // Legitimate 530s: never remapped (stronger logins and TLS also not
    // after a successful AUTH).
    let mut violations = Vec::new();
    let mut legit_n = 0;
    for case in legit_cases(&corpus) {
        let mut variants = vec![None];
        if case.text.enhanced.is_some() {
            variants.push(case.text.enhanced);
        }
        let mut contexts = vec![(case.command, false)];
        if case.after_login {
            let cmd = if case.command == CommandKind::Auth {
                CommandKind::Mail
            } else {
                case.command
            };
            contexts.push((cmd, true));
        }
        for enhanced in variants {
            let reply = recode(&case.text, enhanced);
            for &(cmd, authenticated) in &contexts {
                legit_n += 1;
                let mut f = facts(cmd, case.tls, authenticated);
                if case.tls_demand {
                    // Over a plaintext upstream leg: the operator's 451.
                    f.upstream_tls = false;
                    let verdict = rules.judge(&reply, &f);
                    let seen = verdict.reply(&reply);
                    if verdict.rule() != Some("starttls-required-upstream-leg")
                        || outcome(seen) != "451 4.7.0"
                    {
                        violations.push(format!(
                            "{} at {cmd} over a plaintext upstream leg: {:?}: {} (want 451 4.7.0)",
                            case.source,
                            verdict.rule(),
                            outcome(seen)
                        ));
                    }
                    // Over a TLS upstream leg it is kept.
                    f.upstream_tls = true;
                }
                let verdict = rules.judge(&reply, &f);
                if verdict.action() == Some(Action::Remap) {
                    violations.push(format!(
                        "{} at {cmd} (authenticated {authenticated}): {} -> {:?}: {}",
                        case.source,
                        reply.text_lossy(" | "),
                        verdict.rule(),
                        outcome(verdict.reply(&reply))
                    ));
                }
            }
        }
    }

    println!("\nre-coded real texts, built-in rules {}", rules.version());
    println!(
        "{:<17} {:>13} {:>13} {:>13}",
        "class", "with esc", "without esc", "all"
    );
    let pct = |r: u32, n: u32| {
        if n == 0 {
            100.0
        } else {
            100.0 * f64::from(r) / f64::from(n)
        }
    };
    let cell = |(n, r): (u32, u32)| {
        if n == 0 {
            "-".to_string()
        } else {
            format!("{r}/{n} {:>3.0}%", pct(r, n))
        }
    };
    let (mut n_all, mut r_all) = (0, 0);
    for (class, [with, without]) in &table {
        let all = (with.0 + without.0, with.1 + without.1);
        n_all += all.0;
        r_all += all.1;
        println!(
            "{:<17} {:>13} {:>13} {:>13}",
            class.name(),
            cell(*with),
            cell(*without),
            cell(all)
        );
    }
    let accuracy = f64::from(r_all) / f64::from(n_all.max(1));
    println!("overall: {r_all}/{n_all} ({:.1}%)", 100.0 * accuracy);
    println!(
        "legitimate 530s: {legit_n} judged, {} remapped",
        violations.len()
    );
    for (what, (n, why)) in &excluded {
        println!("excluded: {n:>3} {what}: {why}");
    }
    for w in &wrong {
        println!("wrong: {w}");
    }
    assert!(
        violations.is_empty(),
        "legitimate 530s remapped:\n{}",
        violations.join("\n")
    );
    assert!(
        n_all >= 400,
        "too few re-coded texts ({n_all}): are the fixtures complete?"
    );
    assert!(
        accuracy >= MIN_ACCURACY,
        "{:.1}% of re-coded real texts mapped to their class, below {:.0}%",
        100.0 * accuracy,
        100.0 * MIN_ACCURACY
    );
}

// ------------------------------------------------------------ precedence

/// Remedies of authentication or TLS, as servers word them.
const REMEDIES: &[&str] = &[
    "please use authenticated SMTP",
    "Please turn on SMTP Authentication in your mail client.",
    "Authentication required",
    "You must authenticate first",
    "Client was not authenticated",
    "relaying without authentication is not permitted",
    "Must issue a STARTTLS command first",
];

/// The remedies that demand TLS: over a plaintext upstream leg the reply
/// becomes the operator's `451 4.7.0` whatever shares it; they are judged
/// here over a TLS upstream leg, where they keep the 530.
fn demands_tls(remedy: &str) -> bool {
    remedy.contains("STARTTLS")
}

/// Every real refusal text (of any label) in the same reply as each remedy
/// of authentication or TLS, in both line orders, with and without its
/// enhanced code, at each command but AUTH, before a login: the 530 is
/// never remapped (docs/rules.md "Precedence", step 3).
#[test]
fn a_remedy_anywhere_keeps_the_530_whatever_real_refusal_shares_the_reply() {
    let mut judged = 0u32;
    let mut remapped = Vec::new();
    for refusal in refusal_texts() {
        for remedy in REMEDIES {
            for remedy_first in [false, true] {
                let mut lines = refusal.lines.clone();
                if remedy_first {
                    lines.insert(0, (*remedy).to_string());
                } else {
                    lines.push((*remedy).to_string());
                }
                let combined = Text {
                    lines,
                    enhanced: refusal.enhanced,
                };
                for enhanced in [refusal.enhanced, None] {
                    let reply = recode(&combined, enhanced);
                    for command in [
                        CommandKind::Mail,
                        CommandKind::Rcpt,
                        CommandKind::DataEnd,
                        CommandKind::Other,
                    ] {
                        judged += 1;
                        let mut f = facts(command, false, false);
                        if demands_tls(remedy) {
                            let verdict = RULES.judge(&reply, &f);
                            if outcome(verdict.reply(&reply)) != "451 4.7.0" {
                                remapped.push(format!(
                                    "{} at {command} over a plaintext upstream leg -> {:?}: {} (want 451 4.7.0)",
                                    reply.text_lossy(" | "),
                                    verdict.rule(),
                                    outcome(verdict.reply(&reply))
                                ));
                            }
                            f.upstream_tls = true;
                        }
                        let verdict = RULES.judge(&reply, &f);
                        if verdict.action() == Some(Action::Remap) {
                            remapped.push(format!(
                                "{} at {command} -> {:?}: {}",
                                reply.text_lossy(" | "),
                                verdict.rule(),
                                outcome(verdict.reply(&reply))
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(judged > 10_000, "only {judged} combinations judged");
    assert!(
        remapped.is_empty(),
        "{} of {judged} replies with a remedy remapped, e.g.:\n{}",
        remapped.len(),
        remapped[..remapped.len().min(20)].join("\n")
    );
}

/// The ambiguous "configuration error" line.
const CONFIG_ERROR: &str = "The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.";

/// Every real refusal text a specific rule maps to its class keeps that
/// outcome when the reply also carries the ambiguous "configuration error"
/// line, before or after it: specific beats ambiguous (docs/rules.md
/// "Precedence", step 6).
#[test]
fn a_specific_refusal_keeps_its_class_beside_the_configuration_error_line() {
    let mut excluded = BTreeMap::new();
    let mut cases = bounce_cases(&mut excluded);
    cases.extend(corpus_cases(&corpus(), &mut excluded));
    let (mut judged, mut changed) = (0u32, Vec::new());
    for case in &cases {
        let (cmd, tls, auth) = case.facts;
        let f = facts(cmd, tls, auth);
        for enhanced in [case.text.enhanced, None] {
            let alone = recode(&case.text, enhanced);
            let verdict = RULES.judge(&alone, &f);
            // Only what a specific rule gets right alone: the generic 5.7.x
            // (whose 5.7.1 the configuration error shares) and a reply
            // left unchanged are not specific evidence.
            if !case.class.fits(&verdict, verdict.reply(&alone))
                || matches!(verdict.rule(), None | Some("enhanced-refused"))
            {
                continue;
            }
            let want = outcome(verdict.reply(&alone));
            for config_first in [false, true] {
                let mut lines = case.text.lines.clone();
                if config_first {
                    lines.insert(0, CONFIG_ERROR.to_string());
                } else {
                    lines.push(CONFIG_ERROR.to_string());
                }
                let both = recode(
                    &Text {
                        lines,
                        enhanced: case.text.enhanced,
                    },
                    enhanced,
                );
                judged += 1;
                let v = RULES.judge(&both, &f);
                let got = outcome(v.reply(&both));
                if got != want {
                    changed.push(format!(
                        "{} at {cmd}: alone {want}, with the configuration error {got} ({:?})",
                        case.source,
                        v.rule()
                    ));
                }
            }
        }
    }
    assert!(judged > 500, "only {judged} combinations judged");
    assert!(
        changed.is_empty(),
        "{} of {judged} changed:\n{}",
        changed.len(),
        changed.join("\n")
    );
}

static RULES: std::sync::LazyLock<RuleSet> = std::sync::LazyLock::new(RuleSet::builtin);

/// The refusal texts of the bounce fixture, every label.
fn refusal_texts() -> &'static [Text] {
    static TEXTS: std::sync::LazyLock<Vec<Text>> = std::sync::LazyLock::new(|| {
        let bounces: Bounces = serde_saphyr::from_str(&read_fixture("phrases/bounces.yaml"))
            .expect("bounces.yaml parses");
        bounces
            .items
            .into_iter()
            .filter_map(|i| i.reply.filter(|r| !r.trim().is_empty()))
            .map(|r| split_text(&r))
            .collect()
    });
    &TEXTS
}
