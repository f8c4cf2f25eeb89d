//! The explain page (`/explain`): a form to paste a reply (with the command
//! and session facts it answered) or a whole bounce message, and the
//! verdict `replyfix explain` gives, for people: the original, what it
//! means, what the client sees, the rule, and what to do.
//!
//! The decision and the advice are the library's (`explain::explain`,
//! `explain::advice`, `explain::dsn`), judged with the rules the proxy runs
//! now; this module only reads the form and lays the verdict out. Nothing
//! pasted is kept, logged or sent anywhere. Everything shown from the paste
//! is escaped (L4, then HTML).

use std::fmt::Write as _;

use super::Console;
use super::form::FormError;
use super::html::{Nav, esc, network, page, reply_lines};
use crate::explain::advice::advise;
use crate::explain::dsn::{self, RecipientReport};
use crate::explain::{Explanation, explain, parse_reply_arg};
use crate::rules::{RuleSet, SessionFacts, Verdict};
use crate::smtp::CommandKind;

/// The largest paste judged (octets, after form decoding).
pub const MAX_TEXT: usize = 1024 * 1024;

/// What the visitor pasted: a reply, a bounce, or "find out".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasteKind {
    /// A reply if it reads as one, else a bounce.
    Auto,
    /// One SMTP reply (lines separated by line ends or `|`).
    Reply,
    /// A whole bounce message (RFC 3464 DSN or a known MTA's text).
    Bounce,
}

impl PasteKind {
    const fn as_str(self) -> &'static str {
        match self {
            PasteKind::Auto => "auto",
            PasteKind::Reply => "reply",
            PasteKind::Bounce => "bounce",
        }
    }
}

/// A submitted explain form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExplainRequest {
    /// The paste.
    pub text: String,
    /// What it is.
    pub kind: PasteKind,
    /// The command the reply answered (ignored for a bounce: each
    /// recipient's comes from the bounce).
    pub command: CommandKind,
    /// Recipients already accepted in the transaction.
    pub recipients_accepted: u32,
    /// The session had authenticated.
    pub authenticated: bool,
    /// The client leg was TLS.
    pub client_tls: bool,
    /// The upstream leg was TLS.
    pub upstream_tls: bool,
    /// The listener the session came in on (empty: none).
    pub listener: String,
}

impl Default for ExplainRequest {
    fn default() -> Self {
        ExplainRequest {
            text: String::new(),
            kind: PasteKind::Auto,
            command: CommandKind::Other,
            recipients_accepted: 0,
            authenticated: false,
            client_tls: false,
            upstream_tls: false,
            listener: String::new(),
        }
    }
}

fn problem(field: &str, problem: impl Into<String>) -> FormError {
    FormError {
        field: field.to_string(),
        problem: problem.into(),
    }
}

impl ExplainRequest {
    /// Reads the form's fields (urlencoded pairs); unknown fields are
    /// ignored, a checkbox is on when present.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<ExplainRequest, FormError> {
        let mut r = ExplainRequest::default();
        for (name, value) in pairs {
            match name.as_str() {
                "text" => {
                    if value.len() > MAX_TEXT {
                        return Err(problem(
                            "text",
                            format!("the paste is larger than {MAX_TEXT} octets"),
                        ));
                    }
                    r.text = value;
                }
                "kind" => {
                    r.kind = match value.as_str() {
                        "auto" | "" => PasteKind::Auto,
                        "reply" => PasteKind::Reply,
                        "bounce" => PasteKind::Bounce,
                        _ => return Err(problem("kind", "expected auto, reply or bounce")),
                    }
                }
                "command" => {
                    r.command =
                        value
                            .parse()
                            .map_err(|e: crate::smtp::command::UnknownCommandKind| {
                                problem("command", e.to_string())
                            })?
                }
                "recipients_accepted" => {
                    let v = value.trim();
                    r.recipients_accepted = if v.is_empty() {
                        0
                    } else {
                        v.parse().map_err(|_| {
                            problem("recipients_accepted", "expected a whole number, 0 or more")
                        })?
                    }
                }
                "authenticated" => r.authenticated = true,
                "client_tls" => r.client_tls = true,
                "upstream_tls" => r.upstream_tls = true,
                "listener" => r.listener = value,
                _ => {}
            }
        }
        Ok(r)
    }

    fn facts<'a>(&'a self, upstream: &'a str) -> SessionFacts<'a> {
        let mut f = SessionFacts::new(self.command);
        f.recipients_accepted = self.recipients_accepted;
        f.authenticated = self.authenticated;
        f.client_tls = self.client_tls;
        f.upstream_tls = self.upstream_tls;
        f.listener = &self.listener;
        f.upstream = upstream;
        f
    }
}

/// The explain page: the form (filled with `request`, if any), then the
/// verdict, or what was wrong with the form.
pub fn render(
    console: &Console,
    rules: &RuleSet,
    request: Option<&ExplainRequest>,
    form_error: Option<&FormError>,
) -> String {
    let blank = ExplainRequest::default();
    let shown = request.unwrap_or(&blank);
    let mut body = String::with_capacity(16 * 1024);
    body.push_str(
        "<h1>Explain a reply or a bounce</h1>\
         <p>Paste an SMTP reply (for example the line a bounce quotes) or a whole bounce \
         message. replyfix judges it with the rules it runs now and says what it means. \
         Nothing you paste is kept.</p>",
    );
    // The verdict first (what the visitor came for), the form under it.
    if let Some(e) = form_error {
        let _ = write!(
            body,
            "<p class=\"bad\" id=\"form-error\">{}</p>",
            esc(&e.to_string())
        );
    } else if let Some(r) = request
        && !r.text.trim().is_empty()
    {
        verdict(&mut body, console, rules, r);
    }
    form(&mut body, console, shown);
    page("Explain", Nav::Explain, &console.hostname, &body, false)
}

fn form(body: &mut String, console: &Console, r: &ExplainRequest) {
    body.push_str(
        "<form class=\"explain\" method=\"post\" action=\"/explain\" \
         accept-charset=\"utf-8\">",
    );
    let _ = write!(
        body,
        "<label for=\"text\">Reply or bounce</label>\
         <textarea id=\"text\" name=\"text\" required spellcheck=\"false\" \
         placeholder=\"530 5.7.1 The message cannot be delivered due to a configuration error on the server.\">{}</textarea>",
        esc(&r.text)
    );
    body.push_str("<fieldset><legend>This is</legend>");
    for (kind, label) in [
        (PasteKind::Auto, "find out"),
        (PasteKind::Reply, "one reply"),
        (PasteKind::Bounce, "a whole bounce message"),
    ] {
        let _ = write!(
            body,
            "<label><input type=\"radio\" name=\"kind\" value=\"{}\"{}> {label}</label>",
            kind.as_str(),
            checked(r.kind == kind)
        );
    }
    body.push_str(
        "</fieldset><fieldset><legend>The session, as far as you know it \
         (for a bounce, the command comes from the bounce)</legend>\
         <label>command answered <select name=\"command\" id=\"command\">",
    );
    for k in CommandKind::ALL {
        let label = if k == CommandKind::Other {
            "other / not known"
        } else {
            k.as_str()
        };
        let _ = write!(
            body,
            "<option value=\"{}\"{}>{label}</option>",
            k.as_str(),
            if k == r.command { " selected" } else { "" }
        );
    }
    let _ = write!(
        body,
        "</select></label>\
         <label>recipients already accepted <input type=\"number\" name=\"recipients_accepted\" \
         min=\"0\" max=\"100000\" value=\"{}\" style=\"width:6em\"></label>\
         <label><input type=\"checkbox\" name=\"authenticated\"{}> authenticated</label>\
         <label><input type=\"checkbox\" name=\"client_tls\"{}> client used TLS</label>\
         <label><input type=\"checkbox\" name=\"upstream_tls\"{}> upstream leg TLS</label>\
         <label>listener <select name=\"listener\"><option value=\"\">any</option>",
        r.recipients_accepted,
        checked(r.authenticated),
        checked(r.client_tls),
        checked(r.upstream_tls),
    );
    for name in console.listener_names() {
        let _ = write!(
            body,
            "<option value=\"{}\"{}>{}</option>",
            esc(name),
            if name == r.listener { " selected" } else { "" },
            esc(name)
        );
    }
    body.push_str(
        "</select></label></fieldset>\
         <button type=\"submit\" id=\"submit\">Explain</button></form>",
    );
}

fn checked(on: bool) -> &'static str {
    if on { " checked" } else { "" }
}

/// The verdict for a filled form.
fn verdict(body: &mut String, console: &Console, rules: &RuleSet, r: &ExplainRequest) {
    let upstream = console.upstream_of(&r.listener).unwrap_or("");
    let facts = r.facts(upstream);
    let as_reply = match r.kind {
        PasteKind::Bounce => None,
        _ => Some(parse_reply_arg(&r.text)),
    };
    match as_reply {
        Some(Ok(reply)) => {
            let e = explain(rules, reply, &facts);
            reply_verdict(body, &e, r);
        }
        Some(Err(why)) if r.kind == PasteKind::Reply => {
            let _ = write!(
                body,
                "<p class=\"bad\" id=\"form-error\">This is not a reply replyfix can read: {}</p>",
                esc(&why)
            );
        }
        _ => bounce_verdict(body, rules, r, &facts),
    }
}

/// `code 530, enhanced code 5.7.1`.
fn codes(e: &crate::smtp::Reply) -> String {
    match e.enhanced() {
        Some(x) => format!("code {}, enhanced code {x}", e.code()),
        None => format!("code {}, no enhanced code", e.code()),
    }
}

/// What the rules decided, in words.
fn decision(v: &Verdict) -> String {
    match v {
        Verdict::NoMatch => "no rule matched: the reply passes unchanged".to_string(),
        Verdict::Keep { rule } => format!("rule {}: keep the reply as it is", esc(rule)),
        Verdict::Rewrite { rule, action, .. } => format!("rule {}: {action}", esc(rule)),
    }
}

fn reply_verdict(body: &mut String, e: &Explanation, r: &ExplainRequest) {
    let advice = advise(&e.original, &e.verdict);
    let changed = matches!(e.verdict, Verdict::Rewrite { .. });
    let _ = write!(
        body,
        "<section class=\"verdict\" id=\"verdict\"><h2>Verdict</h2><dl>\
         <dt>Original reply</dt><dd><pre id=\"original\">{}</pre>\
         <span class=\"muted\">{}, answering <code>{}</code></span></dd>\
         <dt>What it means</dt><dd id=\"meaning\">{}</dd>\
         <dt>What the client sees</dt><dd><pre id=\"client-sees\">{}</pre>{}</dd>\
         <dt>Rule</dt><dd id=\"rule\">{}</dd>\
         <dt>What to do</dt><dd id=\"what-to-do\">{}</dd></dl>",
        reply_lines(e.original.raw()),
        codes(&e.original),
        e.context.as_str(),
        esc(advice.meaning),
        reply_lines(e.client_sees().raw()),
        if changed {
            String::new()
        } else {
            "<span class=\"muted\">(unchanged)</span>".to_string()
        },
        decision(&e.verdict),
        esc(advice.action),
    );
    facts_line(body, &e.rules_version, r, true);
    body.push_str("</section>");
}

fn facts_line(body: &mut String, rules_version: &str, r: &ExplainRequest, with_command: bool) {
    let mut facts = Vec::new();
    if with_command {
        facts.push(format!("command {}", r.command.as_str()));
    }
    facts.push(format!("{} recipient(s) accepted", r.recipients_accepted));
    facts.push(
        if r.authenticated {
            "authenticated"
        } else {
            "not authenticated"
        }
        .into(),
    );
    facts.push(format!(
        "client leg {}",
        if r.client_tls { "TLS" } else { "plaintext" }
    ));
    facts.push(format!(
        "upstream leg {}",
        if r.upstream_tls { "TLS" } else { "plaintext" }
    ));
    if !r.listener.is_empty() {
        facts.push(format!("listener {}", esc(&r.listener)));
    }
    let _ = write!(
        body,
        "<p class=\"muted\" id=\"facts\">Judged with rules <code>{}</code>; {}.</p>",
        esc(rules_version),
        facts.join(", ")
    );
}

fn bounce_verdict(
    body: &mut String,
    rules: &RuleSet,
    r: &ExplainRequest,
    facts: &SessionFacts<'_>,
) {
    let bounce = match dsn::parse_bounce(r.text.as_bytes()) {
        Ok(b) => b,
        Err(e) => {
            let _ = write!(
                body,
                "<p class=\"bad\" id=\"form-error\">This is neither a reply (a line starting \
                 with its three-digit code) nor a bounce message: {}.</p>",
                esc(&e.to_string())
            );
            return;
        }
    };
    let reports = dsn::explain_bounce(rules, &bounce, facts);
    let _ = write!(
        body,
        "<section class=\"verdict\" id=\"verdict\"><h2>Verdict</h2>\
         <p id=\"bounce-summary\">A {} bounce with {} failed recipient(s).</p>",
        esc(bounce.style),
        reports.len()
    );
    if reports.is_empty() {
        body.push_str(
            "<p class=\"warn\">No failed recipient was found in it. If you have the reply \
             line the bounce quotes, paste that instead.</p>",
        );
    }
    for report in &reports {
        recipient(body, report);
    }
    facts_line(body, rules.version(), r, false);
    body.push_str("</section>");
}

fn recipient(body: &mut String, report: &RecipientReport) {
    let rc = &report.recipient;
    let _ = write!(
        body,
        "<h3 class=\"mono recipient\">{}</h3><dl>",
        network(rc.recipient.as_bytes(), 320)
    );
    let reason = match report.accurate_reason {
        Some(a) if a != rc.reason => format!("{} (after the rules: {a})", rc.reason),
        _ => rc.reason.to_string(),
    };
    let _ = write!(
        body,
        "<dt>Reason</dt><dd class=\"reason\">{}</dd>",
        esc(&reason)
    );
    if let Some(m) = &rc.remote_mta {
        let _ = write!(
            body,
            "<dt>Remote server</dt><dd class=\"mono\">{}</dd>",
            network(m.as_bytes(), 255)
        );
    }
    if rc.status.is_some() || rc.action.is_some() {
        let _ = write!(
            body,
            "<dt>Status</dt><dd class=\"mono\">{}{}</dd>",
            rc.status
                .as_deref()
                .map_or_else(|| "-".to_string(), |s| network(s.as_bytes(), 64)),
            rc.action
                .as_deref()
                .map_or_else(String::new, |a| format!(" ({})", network(a.as_bytes(), 64)))
        );
    }
    let how = if rc.context_known {
        "as the bounce says"
    } else {
        "the bounce does not say which command"
    };
    match &report.explanation {
        Some(e) => {
            let changed = matches!(e.verdict, Verdict::Rewrite { .. });
            let _ = write!(
                body,
                "<dt>Original reply</dt><dd><pre class=\"original\">{}</pre>\
                 <span class=\"muted\">{}, answering <code>{}</code> ({how})</span></dd>\
                 <dt>What it means</dt><dd class=\"meaning\">{}</dd>\
                 <dt>What the client sees through replyfix</dt><dd><pre class=\"client-sees\">{}</pre>{}</dd>\
                 <dt>Rule</dt><dd class=\"rule\">{}</dd>",
                reply_lines(e.original.raw()),
                codes(&e.original),
                e.context.as_str(),
                esc(report.advice.meaning),
                reply_lines(e.client_sees().raw()),
                if changed {
                    ""
                } else {
                    "<span class=\"muted\">(unchanged)</span>"
                },
                decision(&e.verdict),
            );
        }
        None => {
            let d = rc
                .diagnostic
                .as_deref()
                .map_or_else(|| "none".to_string(), |d| network(d.as_bytes(), 1024));
            let _ = write!(
                body,
                "<dt>Original reply</dt><dd>no SMTP reply in the bounce; diagnostic: \
                 <span class=\"mono\">{d}</span></dd>\
                 <dt>What it means</dt><dd class=\"meaning\">{}</dd>",
                esc(report.advice.meaning),
            );
        }
    }
    let _ = write!(
        body,
        "<dt>What to do</dt><dd class=\"what-to-do\">{}</dd></dl>",
        esc(report.advice.action)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::form::decode;

    fn console() -> Console {
        let config = crate::config::Config::quick(
            vec!["127.0.0.1:2525".parse().unwrap()],
            vec!["127.0.0.1:25".into()],
        )
        .unwrap();
        let rules = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(RuleSet::builtin()));
        Console::new(
            &config,
            rules,
            std::sync::Arc::new(crate::metrics::Metrics::new()),
            std::sync::Arc::new(crate::readiness::Readiness::new(["default"])),
            std::sync::Arc::new(super::super::Recent::new()),
        )
    }

    fn page_for(query: &str) -> String {
        let c = console();
        let rules = c.rules();
        match ExplainRequest::from_pairs(decode(query.as_bytes())) {
            Ok(r) => render(&c, &rules, Some(&r), None),
            Err(e) => render(&c, &rules, None, Some(&e)),
        }
    }

    const CONFIG_ERROR: &str = "530 The message cannot be delivered due to a configuration error on the server. Please contact your Administrator.";

    #[test]
    fn the_ambiguous_530_gets_the_same_verdict_as_the_command_line() {
        let query = format!(
            "command=rcpt&text={}",
            crate::console::form::encode(CONFIG_ERROR)
        );
        let page = page_for(&query);
        let rules = RuleSet::builtin();
        let reply = parse_reply_arg(CONFIG_ERROR).unwrap();
        let e = explain(&rules, reply, &SessionFacts::new(CommandKind::Rcpt));
        let advice = advise(&e.original, &e.verdict);
        assert_eq!(e.verdict.rule(), Some("config-error-ambiguous"));
        assert!(
            page.contains(&format!(
                "<dd id=\"rule\">rule {}: remap</dd>",
                "config-error-ambiguous"
            )),
            "{page}"
        );
        assert!(page.contains(&esc(advice.meaning)), "{page}");
        assert!(page.contains(&esc(advice.action)), "{page}");
        assert!(page.contains(&reply_lines(e.client_sees().raw())), "{page}");
        assert!(page.contains("answering <code>rcpt</code>"), "{page}");
    }

    #[test]
    fn pasted_markup_is_shown_never_run() {
        let text = "530 5.7.1 <script>alert(1)</script> \"quoted\" </textarea>";
        let page = page_for(&format!("text={}", crate::console::form::encode(text)));
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("</textarea> \""), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
    }

    #[test]
    fn session_facts_change_the_verdict_as_on_the_command_line() {
        let reply = crate::console::form::encode(CONFIG_ERROR);
        let page = page_for(&format!("command=rcpt&recipients_accepted=1&text={reply}"));
        assert!(
            page.contains("config-error-after-accepted-recipient"),
            "{page}"
        );
        assert!(page.contains("1 recipient(s) accepted"), "{page}");
    }

    #[test]
    fn bad_fields_are_reported_not_guessed() {
        assert!(page_for("command=nonsense&text=530+x").contains("id=\"form-error\""));
        assert!(page_for("recipients_accepted=-1&text=530+x").contains("recipients_accepted"));
        assert!(page_for("kind=reply&text=hello").contains("not a reply"));
    }

    #[test]
    fn a_bounce_is_explained_per_recipient_as_explain_dsn_does() {
        let bounce = "From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail Returned to Sender\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.example.net.\r\n\r\n<typo@example.org>: host mail.example.org[192.0.2.25] said: 530 5.7.1 <b>User</b>\r\n    unknown in virtual mailbox table (in reply to RCPT TO command)\r\n";
        let page = page_for(&format!(
            "kind=bounce&text={}",
            crate::console::form::encode(bounce)
        ));
        let rules = RuleSet::builtin();
        let parsed = dsn::parse_bounce(bounce.as_bytes()).unwrap();
        let reports = dsn::explain_bounce(&rules, &parsed, &SessionFacts::new(CommandKind::Other));
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        assert!(page.contains("typo@example.org"), "{page}");
        assert!(page.contains(&esc(r.advice.meaning)), "{page}");
        assert!(page.contains(&esc(r.advice.action)), "{page}");
        let e = r.explanation.as_ref().expect("the bounce quotes a reply");
        assert!(page.contains(&decision(&e.verdict)), "{page}");
        assert!(page.contains(&reply_lines(e.client_sees().raw())), "{page}");
        assert!(
            page.contains(&esc(&r.recipient.reason.to_string())),
            "{page}"
        );
        assert!(page.contains("&lt;b&gt;User&lt;/b&gt;"), "{page}");
        assert!(!page.contains("<b>User"), "{page}");
    }

    #[test]
    fn an_empty_form_shows_no_verdict() {
        let page = page_for("");
        assert!(page.contains("<form"));
        assert!(!page.contains("id=\"verdict\""));
    }
}
