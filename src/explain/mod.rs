//! Offline explanation of one reply (`replyfix explain`): parse what the
//! user pasted, judge it with a rule set in a given context, and say what
//! the client would see and why.
//!
//! It owns only presentation: the decision is [`RuleSet::judge`]'s, the
//! same one the proxy makes. Everything shown from the reply is escaped
//! (L4). It opens no sockets and, but for the transcript file the proxy
//! asks [`transcript::TranscriptWriter`] to append to, no files: callers
//! hand it bytes or readers.
//!
//! Submodules read what people already have when a bounce puzzles them:
//! [`dsn`] bounce messages (read by [`bounce`]), [`maillog`] MTA logs (streamed, bounded
//! memory), [`transcript`] sessions recorded by the proxy and replayed
//! against candidate rules; [`readback`] recognises a reply the proxy
//! already rewrote (its annotation line); [`advice`] turns a verdict into
//! plain words.

pub mod advice;
pub mod bounce;
pub mod dsn;
pub mod extract;
pub mod maillog;
pub mod readback;
mod table;
pub mod topk;
pub mod transcript;

use std::fmt;

use serde_json::{Value, json};

use crate::rules::{RuleSet, SessionFacts, Verdict};
use crate::smtp::escape::escape_capped;
use crate::smtp::{CommandKind, Reply};
use readback::{ReadBack, read_back};

/// Parses a reply given on the command line. Lines are separated by real
/// line ends (CRLF or LF), by the four characters `\r\n`, or by `|`; each
/// line starts with its code (`530-5.7.0 first | 530 5.7.0 last`). A single
/// line needs no line end.
pub fn parse_reply_arg(s: &str) -> Result<Reply, String> {
    let s = s.trim_end_matches(['\r', '\n']);
    let s = s.strip_suffix("\\r\\n").unwrap_or(s);
    if s.trim().is_empty() {
        return Err("empty reply: give a reply such as '530 5.7.0 Authentication required'".into());
    }
    if s.contains('\n') || s.contains("\\r\\n") {
        let normalised = s.replace("\\r\\n", "\n");
        let lines: Vec<&str> = normalised
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .collect();
        return crate::rules::reply_from_lines(&lines);
    }
    crate::rules::parse_reply_lines(s)
}

/// What the rules decide about one reply, ready to show.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// The reply as parsed.
    pub original: Reply,
    /// The command it answered (P1).
    pub context: CommandKind,
    /// What the rules decided.
    pub verdict: Verdict,
    /// [`RuleSet::version`] of the rules used (W5).
    pub rules_version: String,
    /// When the reply carries replyfix's annotation line, what it tells:
    /// the proxy already judged it, so `verdict` is then
    /// [`Verdict::NoMatch`] (the rules are not applied a second time).
    pub rewritten: Option<ReadBack>,
}

/// Judges `reply` with `rules` in the context `facts`. A reply that carries
/// replyfix's annotation line ([`readback::MARKER`]) already went through
/// the proxy: it is read back ([`read_back`]) instead of judged again.
pub fn explain(rules: &RuleSet, reply: Reply, facts: &SessionFacts<'_>) -> Explanation {
    let rewritten = read_back(rules, &reply, facts);
    let verdict = if rewritten.is_some() {
        Verdict::NoMatch
    } else {
        rules.judge(&reply, facts)
    };
    Explanation {
        original: reply,
        context: facts.command,
        verdict,
        rules_version: rules.version().to_string(),
        rewritten,
    }
}

/// The reply's wire lines, each escaped, without line ends.
fn wire_lines(r: &Reply) -> Vec<String> {
    r.raw()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| escape_capped(l.strip_suffix(b"\r").unwrap_or(l), 1024))
        .collect()
}

fn reply_json(r: &Reply) -> Value {
    json!({
        "code": r.code().get(),
        "enhanced": r.enhanced().map(|e| e.to_string()),
        "lines": r.lines().map(|l| escape_capped(l.text, 1024)).collect::<Vec<_>>(),
        "wire": wire_lines(r),
    })
}

impl Explanation {
    /// The reply the client would see (for a reply replyfix already
    /// rewrote: the reply as it is).
    pub fn client_sees(&self) -> &Reply {
        self.verdict.reply(&self.original)
    }

    /// The rule that decided: the rules' now, or the one replyfix applied
    /// (read back from its annotation).
    pub fn rule(&self) -> Option<&str> {
        match &self.rewritten {
            Some(r) => r.rule.as_deref(),
            None => self.verdict.rule(),
        }
    }

    /// The code the server sent: the original's, or for a reply replyfix
    /// already rewrote, the one its annotation (or the replay) gives.
    pub fn server_code(&self) -> Option<crate::smtp::ReplyCode> {
        match &self.rewritten {
            Some(r) => r.server_code,
            None => Some(self.original.code()),
        }
    }

    /// True when the code the server sent was remapped: by the rules now,
    /// or (read back) by replyfix already.
    pub fn remapped(&self) -> bool {
        match &self.rewritten {
            Some(r) => r.remapped(&self.original),
            None => self.verdict.action() == Some(crate::rules::Action::Remap),
        }
    }

    /// A machine-readable form (for `replyfix explain --json`).
    pub fn to_json(&self) -> Value {
        let decision = match &self.rewritten {
            Some(_) => "rewritten_by_replyfix",
            None => self.verdict.action().map_or("no_match", |a| a.as_str()),
        };
        json!({
            "original": reply_json(&self.original),
            "context": self.context.as_str(),
            "rules_version": self.rules_version,
            "rule": self.rule(),
            "decision": decision,
            "changed": matches!(self.verdict, Verdict::Rewrite { .. }),
            "client_sees": reply_json(self.client_sees()),
            "rewritten_by_replyfix": self.rewritten.as_ref().map(|r| read_back_json(r, &self.original)),
        })
    }

    /// What replyfix did to a reply it already rewrote, for people: `the
    /// server said 530; rule 'x' remapped it to 550 5.1.1`. `None` for any
    /// other reply.
    pub fn rewritten_line(&self) -> Option<String> {
        let r = self.rewritten.as_ref()?;
        let said = r.server_code.map_or_else(
            || "the server's code is not named".to_string(),
            |c| format!("the server said {c}"),
        );
        let now = match self.original.enhanced() {
            Some(e) => format!("{} {e}", self.original.code()),
            None => self.original.code().to_string(),
        };
        let what = match (&r.rule, r.remapped(&self.original)) {
            (Some(rule), true) => format!("rule '{rule}' remapped it to {now}"),
            (Some(rule), false) => format!("rule '{rule}' kept {now} and added a hint"),
            (None, true) => format!("remapped to {now} by a rule not in the rules used here (give the proxy's rules with --rules)"),
            (None, false) => "annotated by a rule not in the rules used here (give the proxy's rules with --rules)".to_string(),
        };
        Some(format!("{said}; {what}"))
    }
}

fn read_back_json(r: &ReadBack, received: &Reply) -> Value {
    json!({
        "server_code": r.server_code.map(|c| c.get()),
        "server_reply": r.server_reply.as_ref().map(reply_json),
        "rule": r.rule.as_deref(),
        "action": r.action.map(|a| a.as_str()),
        "why": r.why,
        "remapped": r.remapped(received),
        "seen_by_the_proxy": r.seen.describe(),
        "annotation": escape_capped(r.annotation.as_bytes(), 1024),
    })
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.original;
        let enhanced = o
            .enhanced()
            .map_or_else(|| "none".to_string(), |e| e.to_string());
        let n = o.line_count();
        writeln!(
            f,
            "reply:       code {}, enhanced code {enhanced}, {n} line{}",
            o.code(),
            if n == 1 { "" } else { "s" }
        )?;
        for l in wire_lines(o) {
            writeln!(f, "  {l}")?;
        }
        writeln!(f, "context:     {}", self.context)?;
        writeln!(f, "rules:       {}", self.rules_version)?;
        if let Some(line) = self.rewritten_line() {
            writeln!(
                f,
                "decision:    already rewritten by replyfix (its annotation line): {line}; the rules are not applied again"
            )?;
            if let Some(r) = &self.rewritten {
                if let Some(s) = &r.server_reply {
                    writeln!(f, "server said: {}", wire_lines(s).join(" | "))?;
                }
                if let Some(why) = &r.why {
                    writeln!(f, "why:         {}", escape_capped(why.as_bytes(), 1024))?;
                }
                if let Some(seen) = r.seen.describe() {
                    writeln!(f, "proxy saw:   {seen} (the rule needs it)")?;
                }
            }
        }
        match &self.verdict {
            _ if self.rewritten.is_some() => {}
            Verdict::NoMatch => writeln!(
                f,
                "decision:    no rule matched; the reply passes unchanged"
            )?,
            Verdict::Keep { rule } => writeln!(f, "decision:    rule '{rule}': keep unchanged")?,
            Verdict::Rewrite { rule, action, .. } => {
                writeln!(f, "decision:    rule '{rule}': {action}")?
            }
        }
        writeln!(f, "client sees:")?;
        for l in wire_lines(self.client_sees()) {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(cmd: CommandKind) -> SessionFacts<'static> {
        SessionFacts::new(cmd)
    }

    #[test]
    fn single_line_without_line_end_is_accepted() {
        let r = parse_reply_arg("530 5.7.0 Authentication required").unwrap();
        assert_eq!(r.raw().as_ref(), b"530 5.7.0 Authentication required\r\n");
    }

    #[test]
    fn lines_may_be_separated_by_bar_literal_crlf_or_real_crlf() {
        let want = b"530-5.5.1 Authentication Required.\r\n530 5.5.1 Learn more\r\n";
        for s in [
            "530-5.5.1 Authentication Required. | 530 5.5.1 Learn more",
            "530-5.5.1 Authentication Required.\\r\\n530 5.5.1 Learn more\\r\\n",
            "530-5.5.1 Authentication Required.\r\n530 5.5.1 Learn more\r\n",
            "530 5.5.1 Authentication Required.\n530 5.5.1 Learn more",
        ] {
            let r = parse_reply_arg(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            assert_eq!(r.raw().as_ref(), want, "{s:?}");
        }
    }

    #[test]
    fn line_without_code_is_an_error_with_guidance() {
        let e = parse_reply_arg("530-5.5.1 first | Learn more").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("with its code"), "{e}");
        assert!(parse_reply_arg("Authentication required").is_err());
        assert!(parse_reply_arg("").is_err());
    }

    #[test]
    fn lines_with_different_codes_are_an_error() {
        assert!(parse_reply_arg("530-a | 550 b").is_err());
    }

    #[test]
    fn explanation_of_a_misused_530_shows_rule_and_new_reply() {
        let rules = RuleSet::builtin();
        let r = parse_reply_arg("530 5.7.1 The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.").unwrap();
        let mut f = facts(CommandKind::Rcpt);
        f.recipients_accepted = 1;
        let e = explain(&rules, r, &f);
        let text = e.to_string();
        assert!(
            text.contains("code 530, enhanced code 5.7.1, 1 line"),
            "{text}"
        );
        assert!(text.contains("context:     rcpt"), "{text}");
        assert!(
            text.contains("rule 'config-error-after-accepted-recipient': remap"),
            "{text}"
        );
        assert!(text.contains("  550-5.1.1 The message"), "{text}");
        assert!(text.contains(rules.version()), "{text}");
        let j = e.to_json();
        assert_eq!(j["decision"], "remap");
        assert_eq!(j["rule"], "config-error-after-accepted-recipient");
        assert_eq!(j["original"]["code"], 530);
        assert_eq!(j["client_sees"]["code"], 550);
        assert_eq!(j["client_sees"]["enhanced"], "5.1.1");
        assert_eq!(j["changed"], true);
        assert_eq!(j["context"], "rcpt");
    }

    #[test]
    fn explanation_of_an_untouched_reply_says_no_rule() {
        let rules = RuleSet::builtin();
        let r = parse_reply_arg("250 2.1.5 Ok").unwrap();
        let e = explain(&rules, r, &facts(CommandKind::Rcpt));
        assert!(e.to_string().contains("no rule matched"), "{e}");
        let j = e.to_json();
        assert_eq!(j["decision"], "no_match");
        assert_eq!(j["rule"], Value::Null);
        assert_eq!(j["changed"], false);
        assert_eq!(j["original"]["enhanced"], "2.1.5");
    }

    #[test]
    fn a_reply_replyfix_already_rewrote_is_read_back_not_judged_again() {
        let rules = RuleSet::builtin();
        // What the proxy sends for a kept 530: judging it again would add
        // a second hint.
        let sent = rules
            .judge(
                &parse_reply_arg("530 5.7.0 Authentication required").unwrap(),
                &facts(CommandKind::Mail),
            )
            .reply(&parse_reply_arg("530 5.7.0 Authentication required").unwrap())
            .clone();
        let e = explain(&rules, sent.clone(), &facts(CommandKind::Mail));
        assert_eq!(e.verdict, Verdict::NoMatch);
        assert_eq!(e.client_sees(), &sent);
        assert_eq!(e.rule(), Some("auth-required"));
        assert!(!e.remapped());
        let text = e.to_string();
        assert!(
            text.contains("decision:    already rewritten by replyfix (its annotation line): the server said 530; rule 'auth-required' kept 530 5.7.0 and added a hint"),
            "{text}"
        );
        let j = e.to_json();
        assert_eq!(j["decision"], "rewritten_by_replyfix");
        assert_eq!(j["rewritten_by_replyfix"]["server_code"], 530);
        assert_eq!(j["rewritten_by_replyfix"]["remapped"], false);
    }

    #[test]
    fn control_bytes_in_the_reply_are_escaped() {
        let r = crate::smtp::reply::parse_one(b"530 bad\x1b[31m \xff\r\n")
            .unwrap()
            .unwrap();
        let e = explain(&RuleSet::builtin(), r, &facts(CommandKind::Mail));
        let text = e.to_string();
        assert!(text.contains("530 bad\\x1B[31m \\xFF"), "{text}");
        assert!(!text.contains('\x1b'));
    }
}
