//! replyfix's own rewrites read back from a bounce or a log: a reply that
//! passed through the proxy carries, when its rule annotates, one line
//! whose text starts with [`MARKER`] (docs/rules.md, "The annotation
//! line"). This module finds that line, reads the code the server sent
//! from it (`the server said 530`), and replays the rules in use on the
//! reply the server must have sent to find the rule that writes exactly
//! the reply received — and so why it was rewritten.
//!
//! It only reads the reply and judges candidates with
//! [`RuleSet::judge`]; it never decides anything the rules do not, and does
//! no I/O. A rewrite without an annotation carries no marker and is not
//! recognised here (docs/debugging-bounces.md, "Replies replyfix already
//! rewrote").

use std::sync::{Arc, LazyLock};

use regex::Regex;

use crate::rules::{Action, RuleSet, SessionFacts, Verdict};
use crate::smtp::{CommandKind, EnhancedCode, Reply, ReplyCode};

/// How every annotation line's text starts (after the reply code and the
/// enhanced code): the marker that says replyfix wrote the line.
pub const MARKER: &str = "replyfix: ";

/// An annotation cut by a bounce or log (its end missing) still counts as
/// the rule's when at least this many bytes of its text follow the marker.
pub const MIN_CUT_ANNOTATION: usize = 24;

/// The original code, as the annotations of remapping rules name it.
static SAID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\bthe server said ([2-5][0-9][0-9])\b").expect("static regex"));

/// The session facts the replay found the rule with, where they differ from
/// the facts the caller knew (what the proxy saw that a bounce does not say).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeenFacts {
    /// The command, when the caller did not know it (`other`).
    pub command: Option<CommandKind>,
    pub recipients_accepted: Option<u32>,
    pub authenticated: Option<bool>,
    pub client_tls: Option<bool>,
    pub upstream_tls: Option<bool>,
}

impl SeenFacts {
    /// `at rcpt; 1 recipient already accepted`, or `None` when the replay
    /// needed nothing the caller did not know.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(c) = self.command {
            parts.push(format!("at {c}"));
        }
        if let Some(n) = self.recipients_accepted {
            parts.push(match n {
                1 => "1 recipient already accepted".to_string(),
                n => format!("{n} recipients already accepted"),
            });
        }
        for (name, v) in [
            ("authenticated", self.authenticated),
            ("client leg TLS", self.client_tls),
            ("upstream leg TLS", self.upstream_tls),
        ] {
            if let Some(v) = v {
                parts.push(format!("{}{name}", if v { "" } else { "not " }));
            }
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// What a reply's annotation line tells about how replyfix rewrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadBack {
    /// The annotation line's text from the marker on, white space collapsed
    /// (bounces fold long lines), lossy UTF-8.
    pub annotation: String,
    /// The code the server sent: as the annotation names it, else as the
    /// replay found it; `None` when neither tells.
    pub server_code: Option<ReplyCode>,
    /// The reply the server sent, as far as it can be rebuilt: the lines
    /// before the annotation with the server's code. A remap replaces the
    /// enhanced code, so it is the one the replay needed (often none), not
    /// necessarily the server's.
    pub server_reply: Option<Reply>,
    /// The rule (of the rules in use) that writes exactly the reply read
    /// from `server_reply`; `None` when no rule in use does (other rules,
    /// or a cut or reworded annotation).
    pub rule: Option<Arc<str>>,
    /// What that rule did: annotate (the code is the server's) or remap.
    pub action: Option<Action>,
    /// The rule's `description`: why it rewrites.
    pub why: Option<String>,
    /// Facts the replay needed that the caller did not give.
    pub seen: SeenFacts,
}

impl ReadBack {
    /// True when the code the client got differs from the server's.
    pub fn remapped(&self, received: &Reply) -> bool {
        self.server_code.is_some_and(|c| c != received.code())
    }
}

/// Reads replyfix's annotation back from `reply` (a reply from a bounce or
/// a log), replaying `rules` around `facts` (their `command` is the
/// context the bounce or log gave, `other` when unknown). `None` when no
/// line of the reply starts with [`MARKER`].
pub fn read_back(rules: &RuleSet, reply: &Reply, facts: &SessionFacts<'_>) -> Option<ReadBack> {
    let marked =
        |l: &crate::smtp::reply::Line<'_>| l.text.trim_ascii_start().starts_with(MARKER.as_bytes());
    // The common case, every reply of a log: no marker, nothing allocated.
    if !reply.lines().any(|l| marked(&l)) {
        return None;
    }
    let lines: Vec<_> = reply.lines().collect();
    // Folded white space may precede the marker in a bounce.
    let at = lines.iter().rposition(marked)?;
    let annotation = collapse(lines[at].text);
    let said = SAID
        .captures(&annotation)
        .and_then(|c| ReplyCode::from_digits(c[1].as_bytes()));
    let mut back = ReadBack {
        annotation,
        server_code: said,
        server_reply: None,
        rule: None,
        action: None,
        why: None,
        seen: SeenFacts::default(),
    };
    if at == 0 {
        // Nothing before the annotation: no original to replay.
        return Some(back);
    }
    let received: Vec<(Option<EnhancedCode>, String)> = lines[..=at]
        .iter()
        .map(|l| (l.enhanced, collapse(l.text)))
        .collect();
    if let Some((original, verdict, seen)) = replay(rules, reply, &received, said, facts) {
        back.server_code = Some(original.code());
        back.server_reply = Some(original);
        back.action = verdict.action();
        back.why = verdict
            .rule()
            .and_then(|id| rules.rules().find(|r| r.id() == id))
            .map(|r| r.description().to_string());
        back.rule = match verdict {
            Verdict::Rewrite { rule, .. } | Verdict::Keep { rule } => Some(rule),
            Verdict::NoMatch => None,
        };
        back.seen = seen;
    }
    Some(back)
}

/// White space runs to one space, trimmed, lossy UTF-8.
fn collapse(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Finds an original reply and facts for which `rules` write `received`
/// (the reply's lines up to and including the annotation, white space
/// collapsed). Candidates: the code the annotation names, else the
/// reply's own (an annotation keeps the code), else any 4xx or 5xx; the
/// facts as given first, then each combination of the facts a rule can
/// name and a bounce does not tell.
fn replay(
    rules: &RuleSet,
    reply: &Reply,
    received: &[(Option<EnhancedCode>, String)],
    said: Option<ReplyCode>,
    facts: &SessionFacts<'_>,
) -> Option<(Reply, Verdict, SeenFacts)> {
    let own = reply.code();
    let mut codes: Vec<ReplyCode> = Vec::new();
    codes.extend(said);
    if !codes.contains(&own) {
        codes.push(own);
    }
    if said.is_none() {
        codes.extend((400..600).filter_map(ReplyCode::new).filter(|c| *c != own));
    }
    let before = &received[..received.len() - 1];
    let texts: Vec<&str> = before.iter().map(|(_, t)| t.as_str()).collect();
    let mut commands = vec![facts.command];
    if facts.command == CommandKind::Other {
        commands.extend(
            CommandKind::ALL
                .iter()
                .copied()
                .filter(|c| *c != CommandKind::Other),
        );
    }
    let grid = fact_grid(facts);
    for code in codes {
        for original in originals(code, own, reply.enhanced(), before, &texts) {
            for &command in &commands {
                for f in &grid {
                    let mut f = *f;
                    f.command = command;
                    let verdict = rules.judge(&original, &f);
                    if let Verdict::Rewrite { reply: written, .. } = &verdict
                        && writes(written, received)
                    {
                        let seen = seen_facts(facts, &f);
                        return Some((original, verdict, seen));
                    }
                }
            }
        }
    }
    None
}

/// The candidate originals with `code`: the lines before the annotation,
/// with their own enhanced codes when the code is the reply's own (an
/// annotation changes nothing else), else without an enhanced code and
/// with the reply's (a remap replaced the server's).
fn originals(
    code: ReplyCode,
    own: ReplyCode,
    own_enhanced: Option<EnhancedCode>,
    before: &[(Option<EnhancedCode>, String)],
    texts: &[&str],
) -> Vec<Reply> {
    if code == own {
        let bodies: Vec<String> = before
            .iter()
            .map(|(e, t)| match e {
                Some(e) => format!("{e} {t}"),
                None => t.clone(),
            })
            .collect();
        return vec![Reply::from_line_bodies(code, &bodies)];
    }
    let mut out = vec![Reply::build(code, None, texts)];
    if let Some(e) = own_enhanced
        && e.class == code.class()
    {
        out.push(Reply::build(code, Some(e), texts));
    }
    out
}

/// True when `written` (what a rule sends) is `received`, white space
/// collapsed; the annotation, last, may have been cut after at least
/// [`MIN_CUT_ANNOTATION`] bytes of text.
fn writes(written: &Reply, received: &[(Option<EnhancedCode>, String)]) -> bool {
    if written.line_count() != received.len() {
        return false;
    }
    let last = received.len() - 1;
    written
        .lines()
        .zip(received)
        .enumerate()
        .all(|(i, (w, (e, t)))| {
            let w_text = collapse(w.text);
            w.enhanced == *e
                && (w_text == *t
                    || (i == last
                        && t.len() >= MARKER.len() + MIN_CUT_ANNOTATION
                        && w_text.starts_with(t.as_str())))
        })
}

/// The given facts first, then every combination of the other values of
/// the facts a bounce or log does not tell (recipients accepted 0 or 1,
/// authenticated, TLS on each leg).
fn fact_grid<'a>(facts: &SessionFacts<'a>) -> Vec<SessionFacts<'a>> {
    let mut grid = Vec::with_capacity(16);
    let other = |n: u32| if n == 0 { 1 } else { 0 };
    for ra in [facts.recipients_accepted, other(facts.recipients_accepted)] {
        for auth in [facts.authenticated, !facts.authenticated] {
            for up in [facts.upstream_tls, !facts.upstream_tls] {
                for ctls in [facts.client_tls, !facts.client_tls] {
                    let mut f = *facts;
                    f.recipients_accepted = ra;
                    f.authenticated = auth;
                    f.upstream_tls = up;
                    f.client_tls = ctls;
                    grid.push(f);
                }
            }
        }
    }
    grid
}

fn differs<T: PartialEq>(given: T, used: T) -> Option<T> {
    (given != used).then_some(used)
}

fn seen_facts(given: &SessionFacts<'_>, used: &SessionFacts<'_>) -> SeenFacts {
    SeenFacts {
        command: differs(given.command, used.command),
        recipients_accepted: differs(given.recipients_accepted, used.recipients_accepted),
        authenticated: differs(given.authenticated, used.authenticated),
        client_tls: differs(given.client_tls, used.client_tls),
        upstream_tls: differs(given.upstream_tls, used.upstream_tls),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::parse_reply_arg;

    const CONFIG_ERROR: &str = "530 The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.";

    /// What the proxy sends for `reply` at `command` with `accepted`
    /// recipients, read back at `command` without knowing `accepted`.
    fn round_trip(reply: &str, command: CommandKind, accepted: u32) -> (Reply, ReadBack) {
        let rules = RuleSet::builtin();
        let original = parse_reply_arg(reply).unwrap();
        let mut facts = SessionFacts::new(command);
        facts.recipients_accepted = accepted;
        let sent = rules.judge(&original, &facts).reply(&original).clone();
        let back = read_back(&rules, &sent, &SessionFacts::new(command)).expect("a marker");
        (sent, back)
    }

    #[test]
    fn a_remapped_configuration_error_names_the_servers_530_and_the_rule() {
        let (sent, back) = round_trip(CONFIG_ERROR, CommandKind::Rcpt, 1);
        assert_eq!(sent.code().get(), 550);
        assert_eq!(back.server_code.map(ReplyCode::get), Some(530));
        assert_eq!(
            back.rule.as_deref(),
            Some("config-error-after-accepted-recipient")
        );
        assert_eq!(back.action, Some(Action::Remap));
        assert!(back.remapped(&sent));
        // The bounce does not say another recipient was accepted: the
        // replay found it.
        assert_eq!(back.seen.recipients_accepted, Some(1));
        assert!(back.why.unwrap().contains("after another recipient"));
        let (_, back) = round_trip(CONFIG_ERROR, CommandKind::Rcpt, 0);
        assert_eq!(back.rule.as_deref(), Some("config-error-ambiguous"));
        assert_eq!(back.seen, SeenFacts::default());
    }

    #[test]
    fn folded_white_space_and_a_cut_annotation_are_still_read() {
        let (sent, _) = round_trip(CONFIG_ERROR, CommandKind::Rcpt, 0);
        // As a bounce quotes it: the lines joined on one line, then folded
        // and unfolded (runs of white space where the folds were).
        let joined = String::from_utf8_lossy(sent.raw()).replace("\r\n", " ");
        let text = joined.trim_end().replace(' ', " \t  ");
        let folded = crate::explain::extract::reply_from_quoted(text.as_bytes()).unwrap();
        assert_eq!(folded.line_count(), 2, "{folded:?}");
        let rules = RuleSet::builtin();
        let facts = SessionFacts::new(CommandKind::Rcpt);
        let back = read_back(&rules, &folded, &facts).unwrap();
        assert_eq!(back.rule.as_deref(), Some("config-error-ambiguous"));
        let wire = String::from_utf8_lossy(sent.raw()).into_owned();
        let cut = &wire[..wire.find("blocked").unwrap()];
        let cut = crate::explain::extract::reply_from_quoted(cut.as_bytes()).unwrap();
        let back = read_back(&rules, &cut, &facts).unwrap();
        assert_eq!(back.rule.as_deref(), Some("config-error-ambiguous"));
        // Too little left to tell: the marker and the code, not the rule.
        let short = parse_reply_arg(
            "554-5.0.0 The message cannot be delivered | 554 5.0.0 replyfix: the server said 530",
        )
        .unwrap();
        let back = read_back(&rules, &short, &facts).unwrap();
        assert_eq!(back.rule, None);
        assert_eq!(back.server_code.map(ReplyCode::get), Some(530));
    }

    #[test]
    fn a_kept_530_with_a_hint_is_the_servers_own_code() {
        let (sent, back) = round_trip("530 5.7.0 Authentication required", CommandKind::Mail, 0);
        assert_eq!(sent.code().get(), 530);
        assert_eq!(back.rule.as_deref(), Some("auth-required"));
        assert_eq!(back.action, Some(Action::Annotate));
        assert!(!back.remapped(&sent));
        assert_eq!(
            back.server_reply.unwrap().raw().as_ref(),
            b"530 5.7.0 Authentication required\r\n"
        );
    }

    #[test]
    fn an_annotation_that_names_no_code_is_found_by_replaying_every_code() {
        // An operator's rule whose annotation does not say "the server said
        // {code}": the replay of every code finds the 530 and the rule.
        let yaml = r#"
rules:
  - id: tls-demand-quiet
    description: a TLS demand, annotated without the code
    when: {code: 530, text: 'must issue a starttls'}
    then:
      remap: {code: 451, enhanced: "4.7.0"}
      annotate: "replyfix: the proxy's own connection must use TLS; try again later"
"#;
        let rules = RuleSet::from_sources(&[("own.yaml".into(), yaml.into())])
            .expect("rules")
            .rules;
        let original = parse_reply_arg("530 5.7.0 Must issue a STARTTLS command first").unwrap();
        let facts = SessionFacts::new(CommandKind::Mail);
        let sent = rules.judge(&original, &facts).reply(&original).clone();
        assert_eq!(sent.code().get(), 451);
        assert!(!String::from_utf8_lossy(sent.raw()).contains("said"));
        let back = read_back(&rules, &sent, &facts).expect("a marker");
        assert_eq!(back.server_code.map(ReplyCode::get), Some(530));
        assert_eq!(back.rule.as_deref(), Some("tls-demand-quiet"));
    }

    #[test]
    fn a_reply_without_the_marker_is_not_read_back() {
        let rules = RuleSet::builtin();
        let facts = SessionFacts::new(CommandKind::Rcpt);
        for r in [
            "550 5.1.1 <typo@example.net>: Recipient address rejected: User unknown",
            "530 5.7.0 Authentication required",
            "554 5.7.1 the word replyfix: in the middle is not a marker",
        ] {
            assert_eq!(
                read_back(&rules, &parse_reply_arg(r).unwrap(), &facts),
                None
            );
        }
    }

    #[test]
    fn an_annotation_no_rule_in_use_writes_keeps_only_what_it_says() {
        let rules = RuleSet::builtin();
        let r = parse_reply_arg(
            "550-5.7.1 go away | 550 5.7.1 replyfix: the server said 530: a site rule of another proxy",
        )
        .unwrap();
        let back = read_back(&rules, &r, &SessionFacts::new(CommandKind::Rcpt)).unwrap();
        assert_eq!(back.rule, None);
        assert_eq!(back.server_code.map(ReplyCode::get), Some(530));
        assert!(back.remapped(&r));
        assert!(back.annotation.starts_with(MARKER));
    }

    /// Every rule that annotates, on every example reply it rewrites: what
    /// the proxy sends is read back to that rule (or one writing the same
    /// reply) and to the server's code, at the example's command, whatever
    /// the facts the bounce does not tell.
    #[test]
    fn every_builtin_annotation_reads_back_to_a_rule_writing_the_same_reply() {
        let rules = RuleSet::builtin();
        let mut checked = 0;
        for rule in rules.rules() {
            for ex in &rule.examples {
                let facts = ex.facts();
                let verdict = rules.judge(&ex.reply, &facts);
                let Verdict::Rewrite {
                    reply: sent,
                    action,
                    ..
                } = &verdict
                else {
                    continue;
                };
                if sent.line_count() == ex.reply.line_count() {
                    continue; // a remap without annotation: no marker
                }
                // The annotation line is the marker, and a remap's names
                // the server's code (docs/rules.md, "The annotation line").
                let last = sent.lines().last().expect("a line");
                let text = String::from_utf8_lossy(last.text);
                assert!(text.starts_with(MARKER), "{}: {text}", rule.id());
                let said = format!("the server said {}", ex.reply.code());
                assert!(
                    *action != Action::Remap || text.contains(&said),
                    "{}: {text}",
                    rule.id()
                );
                let back = read_back(&rules, sent, &SessionFacts::new(ex.command))
                    .unwrap_or_else(|| panic!("{}: no marker in {sent:?}", rule.id()));
                assert_eq!(
                    back.server_code,
                    Some(ex.reply.code()),
                    "{}: {sent:?}",
                    rule.id()
                );
                let found = back
                    .rule
                    .unwrap_or_else(|| panic!("{}: no rule for {sent:?}", rule.id()));
                let again = rules.judge(back.server_reply.as_ref().unwrap(), &{
                    let mut f = SessionFacts::new(back.seen.command.unwrap_or(ex.command));
                    f.recipients_accepted = back.seen.recipients_accepted.unwrap_or(0);
                    f.authenticated = back.seen.authenticated.unwrap_or(false);
                    f.client_tls = back.seen.client_tls.unwrap_or(false);
                    f.upstream_tls = back.seen.upstream_tls.unwrap_or(false);
                    f
                });
                assert_eq!(again.rule(), Some(&*found), "{}", rule.id());
                checked += 1;
            }
        }
        assert!(checked >= 20, "only {checked} annotated examples");
    }
}
