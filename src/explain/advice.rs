//! Plain-language advice for a judged reply: one sentence on what the reply
//! most likely means and one on what to do about it.
//!
//! The advice is chosen from the rule that decided (the built-in rules'
//! ids, `rules/default.yaml`), else from the accurate enhanced code (RFC
//! 3463 subject and detail), else from the reply class. It never reads the
//! reply text: what the text means is the rules' decision, made once.

use super::bounce::Reason;
use crate::rules::Verdict;
use crate::smtp::{EnhancedCode, Reply};

/// What a judged reply most likely means and what to do, for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advice {
    /// One sentence: the likely meaning.
    pub meaning: &'static str,
    /// One sentence: what the sender (or operator) should do.
    pub action: &'static str,
}

const fn a(meaning: &'static str, action: &'static str) -> Advice {
    Advice { meaning, action }
}

/// Advice for `original` judged as `verdict` (the accurate reply is
/// `verdict.reply(original)`).
pub fn advise(original: &Reply, verdict: &Verdict) -> Advice {
    if let Some(advice) = verdict.rule().and_then(by_rule) {
        return advice;
    }
    let accurate = verdict.reply(original);
    if let Some(advice) = accurate.enhanced().and_then(by_enhanced) {
        return advice;
    }
    by_class(accurate.code().class(), accurate.code().get())
}

/// Advice for an explained reply: for one replyfix already rewrote, from
/// the rule it applied (read back from its annotation), else from the reply
/// as it is (the proxy's accurate code); otherwise [`advise`].
pub fn advise_explained(e: &super::Explanation) -> Advice {
    match &e.rewritten {
        Some(r) => r
            .rule
            .as_deref()
            .and_then(by_rule)
            .unwrap_or_else(|| advise(&e.original, &Verdict::NoMatch)),
        None => advise(&e.original, &e.verdict),
    }
}

/// Advice from an RFC 3464 `Status` alone (a bounce without an SMTP reply).
pub fn advise_status(status: Option<&str>) -> Advice {
    let e = status.and_then(|s| EnhancedCode::parse(s.trim()));
    match e {
        Some(e) => by_enhanced(e).unwrap_or_else(|| by_class(e.class, 0)),
        None => a(
            "The bounce carries no SMTP reply from a remote server (the failure was local or the text is not understood).",
            "Read the bounce text; the rules judge SMTP replies only.",
        ),
    }
}

/// Advice for a bounce without an SMTP reply: from the decided reason
/// (see `docs/debugging-bounces.md`), else from the RFC 3464 `Status`.
pub fn advise_reason(reason: Reason, status: Option<&str>) -> Advice {
    by_reason(reason).unwrap_or_else(|| advise_status(status))
}

fn by_reason(reason: Reason) -> Option<Advice> {
    Some(match reason {
        Reason::Expired => a(
            "The sending server kept retrying and gave up (or is still retrying): the receiving server was unreachable or kept deferring.",
            "Check that the recipient's domain has working MX hosts; resend once it is reachable.",
        ),
        Reason::NetworkError => a(
            "Delivery failed on the network or in DNS, not at the recipient's mailbox.",
            "The sending server's operator should check DNS, MX records and connectivity to the recipient's servers.",
        ),
        Reason::HostUnknown => a(
            "The recipient's domain does not exist or accepts no mail.",
            "Check the domain part of the recipient address for typos.",
        ),
        Reason::NotAccept => a(
            "The recipient's domain does not accept mail (no usable MX host, or a null MX).",
            "Check the domain part of the recipient address; the domain may not receive mail at all.",
        ),
        Reason::UserUnknown => a(
            "The recipient's mailbox does not exist.",
            "Check the recipient address for typos and ask the recipient for a working one.",
        ),
        Reason::MailboxFull => a(
            "The recipient's mailbox is full.",
            "Tell the recipient by another channel, or resend later once they have made room.",
        ),
        Reason::Suspend => a(
            "The recipient's account is disabled or suspended.",
            "Reach the recipient another way; the address may be abandoned.",
        ),
        Reason::MailerError => a(
            "A local delivery program on the recipient's server failed.",
            "Tell the recipient's mail administrator; retrying unchanged may fail the same way.",
        ),
        Reason::SystemError | Reason::SystemFull => a(
            "The receiving mail system failed or is out of resources.",
            "Resend later; if it persists, tell the recipient's mail administrator.",
        ),
        Reason::Delivered => a(
            "Not a failure: the report says the message was delivered.",
            "Nothing to do.",
        ),
        Reason::Feedback => a(
            "Not a failure: a recipient (or their provider) reported the message as unwanted.",
            "Stop sending to this recipient, and review how the address was subscribed.",
        ),
        Reason::Vacation => a(
            "Not a failure: an automatic reply (out of office).",
            "Nothing to do; the message was delivered.",
        ),
        Reason::Suppressed => a(
            "The sending service did not try: the address is on its suppression list after earlier bounces or complaints.",
            "Remove the address from the suppression list only if you know it works again.",
        ),
        _ => return None,
    })
}

fn by_rule(rule: &str) -> Option<Advice> {
    Some(match rule {
        "starttls-required" => a(
            "The server asks for TLS although the proxy's connection to it is already TLS; the reply passes as the server sent it.",
            "Nothing in the sending client can change this; ask the server's administrator. (A client talking to the server directly, without a proxy, turns on STARTTLS.)",
        ),
        "starttls-required-upstream-leg" => a(
            "The server wants TLS (STARTTLS) before this command; behind replyfix that is the proxy's own plaintext connection to it, which no client can change, so replyfix answers with a temporary 451 4.7.0.",
            "The proxy's operator should set this upstream's tls.policy to may or verify; sending MTAs retry on their own. (A client talking to the server directly, without a proxy, turns on STARTTLS.)",
        ),
        "auth-required" => a(
            "The server wants the client to log in (SMTP AUTH) before sending; the 530 is legitimate.",
            "Configure SMTP authentication (account name and password) for outgoing mail in the sending client.",
        ),
        "config-error-after-accepted-recipient" => a(
            "Another recipient of the same message was accepted, so this \"configuration error\" most likely means the address does not exist.",
            "Check the recipient address for typos and ask the recipient for a working one; do not change passwords or settings.",
        ),
        "config-error-ambiguous" => a(
            "The server refused with a vague \"configuration error\": in practice an unknown recipient address or a blocked sending server, not a login problem.",
            "Check the recipient address first; if it is right, ask the recipient's mail administrator whether your sending server is blocked.",
        ),
        "sender-domain-unknown" => a(
            "The recipient's server could not find the sender's domain in DNS.",
            "Fix the sender address (or the domain's DNS records) so the envelope sender's domain resolves.",
        ),
        "sender-rejected" => a(
            "The recipient's server refuses mail from this sender address.",
            "Send from another address, or ask the recipient's administrator why the sender is refused.",
        ),
        "user-unknown" => a(
            "The recipient's mailbox does not exist.",
            "Check the recipient address for typos and ask the recipient for a working one.",
        ),
        "blocked-sending-host" => a(
            "The recipient's server blocks the sending server (blocklist, reputation or IP policy), not the message or the login.",
            "The sending server's operator should check its IP on public blocklists and request delisting, or relay through another server.",
        ),
        "relay-denied" => a(
            "The server does not relay mail for this client to that destination.",
            "Send through your own provider's submission server with SMTP AUTH, or check the MX/smarthost configuration.",
        ),
        "dmarc-failed" => a(
            "The message failed the sender domain's DMARC policy (SPF and DKIM did not align).",
            "Fix SPF and DKIM for the sender domain so at least one passes aligned with the From: domain.",
        ),
        "spf-failed" => a(
            "The sending server is not allowed to send for the sender's domain by its SPF record.",
            "Add the sending server to the domain's SPF record, or send through a server the record already lists.",
        ),
        "dkim-failed" => a(
            "The message had no valid DKIM signature the recipient's server accepts.",
            "Sign outgoing mail with DKIM and publish the matching public key in DNS.",
        ),
        "content-rejected" => a(
            "The recipient's server judged the message content to be spam or malware.",
            "Review the message (links, attachments, wording) and the sender's reputation; resend without the flagged content.",
        ),
        "policy-rejected" => a(
            "The recipient's server refused the message by its local policy.",
            "Ask the recipient's mail administrator which policy refused it; retrying unchanged will not help.",
        ),
        "mailbox-full" => a(
            "The recipient's mailbox is full.",
            "Tell the recipient by another channel, or resend later once they have made room.",
        ),
        "bad-sequence" => a(
            "The sending software issued SMTP commands in the wrong order.",
            "Report it to whoever maintains the sending software or MTA; this is a protocol bug, not an account problem.",
        ),
        "refused-after-auth" => a(
            "The server refused after a successful login, so this is a policy refusal, not a password problem.",
            "Ask the server's administrator which limit or policy applies to the account (sending quota, allowed senders).",
        ),
        "auth-temporary-failure" => a(
            "The server could not check the login just now; the credentials may well be right.",
            "Try again later; if it persists, ask the server's administrator about its authentication service.",
        ),
        "auth-failed" | "auth-failed-enhanced" => a(
            "The server did not accept the user name or password (a failed login, RFC 4954 535).",
            "Check the account name and password (or application password) configured in the sending client.",
        ),
        "sender-authentication-failed" => a(
            "The message failed the sender domain's e-mail authentication (SPF, DKIM, DMARC); this is not about the SMTP login.",
            "Fix SPF and DKIM for the sender domain so that at least one passes aligned with the From: domain.",
        ),
        "auth-required-after-login" => a(
            "The login succeeded but the server wants a stronger or further authentication (another mechanism, an application password, a web login).",
            "Use the login method the server names (often an application password or OAuth) in the sending client.",
        ),
        "sender-domain-unknown-at-mail" => a(
            "The recipient's server could not find the sender's domain.",
            "Fix the sender address (or the domain's DNS records) so the envelope sender's domain resolves.",
        ),
        "recipient-domain-unknown" | "enhanced-recipient-domain" => a(
            "The recipient's domain does not exist or has no mail server.",
            "Check the domain part of the recipient address for typos.",
        ),
        "recipient-domain-accepts-no-mail" => a(
            "The recipient's domain declares that it accepts no mail (null MX, RFC 7505).",
            "Ask the recipient for an address at a domain that receives mail.",
        ),
        "mailbox-disabled" | "enhanced-mailbox-disabled" => a(
            "The recipient's mailbox exists but is disabled, suspended or inactive.",
            "Reach the recipient another way; resending to this address will not help until they reactivate it.",
        ),
        "mailbox-moved" | "enhanced-mailbox-moved" => a(
            "The recipient is not (or no longer) on that server.",
            "Ask the recipient for their current address.",
        ),
        "message-format-rejected" => a(
            "The recipient's server refused the message for its form (headers, MIME, RFC 5322 rules).",
            "Check the sending software: headers such as From: must be well formed (one address, valid syntax).",
        ),
        "recipient-rejected" => a(
            "The recipient's server refused this recipient address without giving a more specific reason.",
            "Check the recipient address; if it is right, ask the recipient's administrator why it is refused.",
        ),
        "message-rejected-after-data" => a(
            "The recipient's server refused the message after reading it (content or local rules).",
            "Ask the recipient's administrator which rule refused it; retrying unchanged will not help.",
        ),
        "refused-at-connection" => a(
            "The server refused the connection itself, before any address was given: it refuses the sending server.",
            "The sending server's operator should check its IP reputation and blocklists, or relay through another server.",
        ),
        "refused-at-mail" | "enhanced-refused" => a(
            "The server refused by its security or policy rules, not because a login is missing.",
            "Ask the server's administrator which policy refused the sender or the sending server.",
        ),
        "enhanced-sender-domain" | "enhanced-sender-address" => a(
            "The server refused the sender address (its enhanced status code says so).",
            "Check the envelope sender address and its domain's DNS records.",
        ),
        "enhanced-recipient-unknown" | "enhanced-recipient-address" => a(
            "The recipient address was refused as unknown or invalid (its enhanced status code says so).",
            "Check the recipient address for typos and ask the recipient for a working one.",
        ),
        "enhanced-mailbox-full" => a(
            "The recipient's mailbox is full.",
            "Tell the recipient by another channel, or resend later once they have made room.",
        ),
        "stronger-auth-or-tls-by-enhanced-code" => a(
            "The server wants a stronger login mechanism or an encrypted connection; the 530 is legitimate.",
            "Turn on TLS and use the strongest authentication method the sending client offers.",
        ),
        "auth-required-by-enhanced-code" => a(
            "The server's status code asks the client to log in (SMTP AUTH); the 530 is legitimate.",
            "Configure SMTP authentication (account name and password) for outgoing mail in the sending client.",
        ),
        _ => return None,
    })
}

fn by_enhanced(e: EnhancedCode) -> Option<Advice> {
    Some(match (e.subject, e.detail) {
        (1, 1) => a(
            "The recipient's mailbox does not exist.",
            "Check the recipient address for typos and ask the recipient for a working one.",
        ),
        (1, 2) => a(
            "The recipient's domain does not exist or accepts no mail.",
            "Check the domain part of the recipient address.",
        ),
        (1, 8) => a(
            "The sender's domain could not be verified.",
            "Fix the sender address or the domain's DNS records.",
        ),
        (1, _) => a(
            "The server refused an address in the envelope.",
            "Check the sender and recipient addresses.",
        ),
        (2, 2) => a(
            "The recipient's mailbox is full.",
            "Tell the recipient by another channel, or resend later.",
        ),
        (2, _) => a(
            "The recipient's mailbox cannot take mail right now.",
            "Resend later or reach the recipient another way.",
        ),
        (3, 4) => a(
            "The message is larger than the server accepts.",
            "Send a smaller message (share large files by link).",
        ),
        (4, _) => a(
            "Delivery failed on the network or routing path (DNS, connection, loops).",
            "The sending server's operator should check DNS, MX records and connectivity.",
        ),
        (5, _) => a(
            "The servers disagreed on the SMTP protocol.",
            "Report it to whoever maintains the sending software or MTA.",
        ),
        (7, 0) | (7, 8) | (7, 57) => a(
            "The server wants the client to authenticate (or the login failed).",
            "Check the SMTP AUTH settings (account name, password, method) of the sending client.",
        ),
        (7, 23) => a(
            "SPF did not authorise the sending server for the sender's domain.",
            "Add the sending server to the domain's SPF record.",
        ),
        (7, 20) | (7, 21) | (7, 22) => a(
            "DKIM verification failed.",
            "Sign outgoing mail with DKIM and publish the key in DNS.",
        ),
        (7, 25) | (7, 26) => a(
            "Sender authentication checks (DMARC, reverse DNS) failed.",
            "Fix SPF, DKIM and DMARC alignment for the sender domain and the sending server's reverse DNS.",
        ),
        (7, _) => a(
            "The server refused the message by security or policy.",
            "Ask the recipient's mail administrator which policy refused it.",
        ),
        _ => return None,
    })
}

fn by_class(class: u8, code: u16) -> Advice {
    match (class, code) {
        (4, _) => a(
            "A temporary failure: the sending server will retry by itself.",
            "Wait; if it keeps failing for hours, ask the recipient's administrator.",
        ),
        (5, 530) => a(
            "A 530 that no rule recognises: by RFC 4954 it means \"authentication required\", but servers also misuse it.",
            "If the sender does not need to log in to that server, read the text and ask the recipient's administrator what it means.",
        ),
        (5, _) => a(
            "A permanent failure: the server will not take this message as it is.",
            "Read the reply text; retrying unchanged will not help.",
        ),
        _ => a("Not a failure reply.", "Nothing to do."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::parse_reply_arg;
    use crate::rules::{RuleSet, SessionFacts};
    use crate::smtp::CommandKind;

    #[test]
    fn every_builtin_rule_has_advice() {
        for r in RuleSet::builtin().rules() {
            assert!(by_rule(r.id()).is_some(), "no advice for {}", r.id());
        }
    }

    #[test]
    fn unmatched_reply_falls_back_to_its_enhanced_code() {
        let r = parse_reply_arg("550 5.1.1 nope").unwrap();
        let adv = advise(&r, &Verdict::NoMatch);
        assert!(adv.meaning.contains("does not exist"));
        let r = parse_reply_arg("451 try later").unwrap();
        assert!(advise(&r, &Verdict::NoMatch).meaning.contains("temporary"));
    }

    #[test]
    fn advice_follows_the_deciding_rule() {
        let rules = RuleSet::builtin();
        let r = parse_reply_arg("530 5.7.1 Your IP is listed on a blocklist").unwrap();
        let v = rules.judge(&r, &SessionFacts::new(CommandKind::Rcpt));
        assert_eq!(v.rule(), Some("blocked-sending-host"));
        assert!(advise(&r, &v).action.contains("delisting"));
    }
}
