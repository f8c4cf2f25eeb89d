//! Why a recipient bounced, as one machine-readable word in the vocabulary
//! bounce processors already use (`userunknown`, `mailboxfull`, `blocked`,
//! ...; the list and how each is decided are in `docs/debugging-bounces.md`).
//!
//! The reason is decided from the evidence of one recipient together: the
//! words of the remote reply or the bounce's own explanation (classes of
//! phrases servers use, never a message of a particular sample), the RFC
//! 3463 status, the reply code, the command it answered and the DSN
//! `Action`. The wording classes are [`super::wording`]'s; this module
//! orders the evidence. Pure functions; no I/O.

use std::fmt;

use super::wording::{
    EXPIRY_SETS, LATE_SETS, SPECIFIC_SETS, first_class, first_class_but, normalise, rank,
};
use crate::smtp::{CommandKind, EnhancedCode};

/// Why a message did not reach (or did reach) a recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The recipient's server refused the sender's authentication (SPF,
    /// DKIM, DMARC); RFC 7372 codes x.7.20–x.7.26.
    AuthFailure,
    /// The sending IP address or domain has a bad reputation.
    BadReputation,
    /// The sending host is refused (blocklist, IP policy, HELO name).
    Blocked,
    /// The message content or its media type was refused (RFC 3463 x.6.x).
    ContentError,
    /// Not a failure: the message was delivered (a positive DSN).
    Delivered,
    /// A per-mailbox or per-message limit was exceeded (x.2.3).
    ExceedLimit,
    /// The sending server gave up retrying (queue lifetime, x.4.7).
    Expired,
    /// TLS could not be negotiated with the receiving server.
    FailedStartTls,
    /// Not a failure: a complaint (feedback loop) report.
    Feedback,
    /// The recipient (or its mailbox's filter) refused the message after
    /// the recipient was accepted, or the mailbox refuses this sender.
    Filtered,
    /// The mailbox has moved and mail is not forwarded (x.1.6).
    HasMoved,
    /// The recipient's domain does not exist or cannot be routed (x.1.2).
    HostUnknown,
    /// The recipient's mailbox is full (x.2.2).
    MailboxFull,
    /// A local delivery program failed (pipe, procmail, ...).
    MailerError,
    /// The message is larger than the server accepts (x.3.4).
    MesgTooBig,
    /// A network or DNS failure on the way (x.4.x).
    NetworkError,
    /// The server does not relay for the sender.
    NoRelaying,
    /// The destination does not accept mail at all (null MX, x.3.2).
    NotAccept,
    /// The message breaks the message format standards (RFC 5322).
    NotCompliantRfc,
    /// The bounce says too little to decide.
    OnHold,
    /// A local policy of the recipient's server refused it.
    PolicyViolation,
    /// The sender address was refused (x.1.7, x.1.8, refusal of MAIL).
    Rejected,
    /// The sending host has no (or a mismatching) reverse DNS name.
    RequirePtr,
    /// A security rule refused it (RFC 3463 x.7.x without more detail).
    SecurityError,
    /// Sending too fast: a rate limit.
    Speeding,
    /// The message was judged to be spam.
    SpamDetected,
    /// The recipient address is on the sending service's suppression list.
    Suppressed,
    /// The recipient's account is disabled or suspended (x.2.1, x.7.13).
    Suspend,
    /// The servers disagreed on the SMTP protocol (x.5.x).
    SyntaxError,
    /// The receiving system failed (x.3.x, directory server).
    SystemError,
    /// The receiving system is out of storage (x.3.1).
    SystemFull,
    /// Too many connections or recipients at once.
    TooManyConn,
    /// Nothing in the bounce says why.
    Undefined,
    /// The recipient's mailbox does not exist (x.1.1).
    UserUnknown,
    /// Not a failure: an automatic "out of office" reply.
    Vacation,
    /// The message carried a virus.
    VirusDetected,
}

impl Reason {
    /// Every reason, in the order of [`Reason::as_str`] names.
    pub const ALL: [Reason; 36] = [
        Reason::AuthFailure,
        Reason::BadReputation,
        Reason::Blocked,
        Reason::ContentError,
        Reason::Delivered,
        Reason::ExceedLimit,
        Reason::Expired,
        Reason::FailedStartTls,
        Reason::Feedback,
        Reason::Filtered,
        Reason::HasMoved,
        Reason::HostUnknown,
        Reason::MailboxFull,
        Reason::MailerError,
        Reason::MesgTooBig,
        Reason::NetworkError,
        Reason::NoRelaying,
        Reason::NotAccept,
        Reason::NotCompliantRfc,
        Reason::OnHold,
        Reason::PolicyViolation,
        Reason::Rejected,
        Reason::RequirePtr,
        Reason::SecurityError,
        Reason::Speeding,
        Reason::SpamDetected,
        Reason::Suppressed,
        Reason::Suspend,
        Reason::SyntaxError,
        Reason::SystemError,
        Reason::SystemFull,
        Reason::TooManyConn,
        Reason::Undefined,
        Reason::UserUnknown,
        Reason::Vacation,
        Reason::VirusDetected,
    ];

    /// The lower-case name (`userunknown`, `mailboxfull`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::AuthFailure => "authfailure",
            Reason::BadReputation => "badreputation",
            Reason::Blocked => "blocked",
            Reason::ContentError => "contenterror",
            Reason::Delivered => "delivered",
            Reason::ExceedLimit => "exceedlimit",
            Reason::Expired => "expired",
            Reason::FailedStartTls => "failedstarttls",
            Reason::Feedback => "feedback",
            Reason::Filtered => "filtered",
            Reason::HasMoved => "hasmoved",
            Reason::HostUnknown => "hostunknown",
            Reason::MailboxFull => "mailboxfull",
            Reason::MailerError => "mailererror",
            Reason::MesgTooBig => "mesgtoobig",
            Reason::NetworkError => "networkerror",
            Reason::NoRelaying => "norelaying",
            Reason::NotAccept => "notaccept",
            Reason::NotCompliantRfc => "notcompliantrfc",
            Reason::OnHold => "onhold",
            Reason::PolicyViolation => "policyviolation",
            Reason::Rejected => "rejected",
            Reason::RequirePtr => "requireptr",
            Reason::SecurityError => "securityerror",
            Reason::Speeding => "speeding",
            Reason::SpamDetected => "spamdetected",
            Reason::Suppressed => "suppressed",
            Reason::Suspend => "suspend",
            Reason::SyntaxError => "syntaxerror",
            Reason::SystemError => "systemerror",
            Reason::SystemFull => "systemfull",
            Reason::TooManyConn => "toomanyconn",
            Reason::Undefined => "undefined",
            Reason::UserUnknown => "userunknown",
            Reason::Vacation => "vacation",
            Reason::VirusDetected => "virusdetected",
        }
    }

    /// The reason named `s` (as [`Reason::as_str`] writes it).
    pub fn from_name(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// True for the reasons that are not delivery failures.
    pub const fn is_not_a_failure(self) -> bool {
        matches!(
            self,
            Reason::Delivered | Reason::Feedback | Reason::Vacation
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known about one recipient's failure.
#[derive(Clone, Copy, Debug, Default)]
pub struct Evidence<'a> {
    /// The remote reply or the bounce's words about this recipient.
    pub text: &'a str,
    /// The bounce's own words around the reply (read after `text`).
    pub note: &'a str,
    /// The RFC 3463 status decided for the recipient.
    pub status: Option<EnhancedCode>,
    /// The reply code, when the remote server replied.
    pub code: Option<u16>,
    /// The command the reply answered, when the bounce says.
    pub command: Option<CommandKind>,
    /// The DSN `Action` (`failed`, `delayed`, ...), lower case.
    pub action: Option<&'a str>,
    /// What the bounce format itself says, in its own fixed words, when it
    /// says more than the text (a delay notice, a feedback report).
    pub hint: Option<Reason>,
}

/// True for the statuses that say little beyond their subject
/// (`x.1.0`, `x.2.0`, `x.3.0`, `x.7.0`, `x.7.1`): the bounce's own words
/// outrank them.
fn weak_status(s: EnhancedCode) -> bool {
    matches!((s.subject, s.detail), (1..=3, 0) | (7, 0 | 1))
}

/// The reason an RFC 3463 status names by itself (RFC 3463 section 3,
/// RFC 7372, RFC 7505); `None` for codes that say only the class
/// (`5.0.0`, `4.4.0`, ...).
pub fn reason_from_status(s: EnhancedCode) -> Option<Reason> {
    let temporary = s.class == 4;
    Some(match (s.subject, s.detail) {
        (1, 0 | 1 | 3) if !temporary => Reason::UserUnknown,
        (1, 2) if !temporary => Reason::HostUnknown,
        (1, 4) => Reason::Filtered,
        (1, 6) => Reason::HasMoved,
        (1, 7 | 8) => Reason::Rejected,
        (1, 9) => Reason::SystemError,
        (1, 10) => Reason::NotAccept,
        (2, 0 | 1) if !temporary => Reason::Filtered,
        (2, 1) => Reason::Suspend,
        (2, 2) => Reason::MailboxFull,
        (2, 3) => Reason::ExceedLimit,
        (2, 4) => Reason::Filtered,
        (3, 0) if !temporary => Reason::SystemError,
        (3, 1) => Reason::SystemFull,
        (3, 2) => Reason::NotAccept,
        (3, 3 | 5) => Reason::SystemError,
        (3, 4) => Reason::MesgTooBig,
        (4, 0) if !temporary => Reason::NetworkError,
        (4, 1) if temporary => Reason::Expired,
        (4, 2 | 6 | 8) => Reason::NetworkError,
        (4, 4) if temporary => Reason::NetworkError,
        (4, 4) => Reason::HostUnknown,
        (4, 3) => Reason::SystemError,
        (4, 5) => Reason::SystemFull,
        (4, 7) => Reason::Expired,
        (5, 2 | 6) => Reason::SyntaxError,
        (5, 3) => Reason::TooManyConn,
        (5, 4 | 5) => Reason::SystemError,
        (6, _) => Reason::ContentError,
        (7, 1 | 2) if temporary => Reason::Blocked,
        (7, 13) => Reason::Suspend,
        (7, 16) => Reason::MesgTooBig,
        (7, 17 | 18) => Reason::HasMoved,
        (7, 20..=24 | 26) => Reason::AuthFailure,
        (7, 25) => Reason::RequirePtr,
        (7, 27) => Reason::NotAccept,
        (7, 0 | 1 | 3..=12 | 14 | 15 | 19) => Reason::SecurityError,
        _ => return None,
    })
}

/// Decides the reason for one recipient (see `docs/debugging-bounces.md`,
/// "Reasons"), in this order:
///
/// 1. a delivered status (`2.x.x`) or `Action: delivered`, and the format's
///    word that it is a delivery report, a complaint or an automatic reply;
/// 2. the specific wording classes over the remote reply (an `X-Unix`
///    diagnostic is `mailererror` unless a class tried before that one
///    matches; spam words in a reply to a command before the content are
///    passed over);
/// 3. what the bounce format says in its own fixed words;
/// 4. the reporting MTA's words that it gave up (queue lifetime);
/// 5. the status code's own meaning (RFC 3463, RFC 7372, RFC 7505), for
///    the codes that say more than their subject;
/// 6. the specific wording classes over the bounce's words around the reply;
/// 7. the command refused: `MAIL` is `rejected`, the greeting, `HELO` or
///    `EHLO` is `blocked`;
/// 8. the statuses of little detail (`x.1.0`, `x.2.0`, `x.3.0`, `x.7.0`,
///    `x.7.1`);
/// 9. the late wording classes (connection failures, "giving up",
///    automatic replies);
/// 10. `Action: delayed` is `expired`; a `x.7.x` status `securityerror`, a
///     `x.6.x` one `contenterror`; a reply code 521 or 556 `notaccept`, 500
///     to 504 `syntaxerror`;
/// 11. any other text is `onhold`; nothing at all `undefined`.
///
/// Address refusals are adjusted by the command they answered
/// ([`by_command`]).
pub fn decide(e: &Evidence<'_>) -> Reason {
    let action = e.action.unwrap_or("");
    if matches!(action, "delivered" | "relayed" | "expanded")
        || e.status.is_some_and(|s| s.class == 2)
    {
        return Reason::Delivered;
    }
    // Not failures: the bounce's own structure says so, whatever the words.
    if let Some(h @ (Reason::Feedback | Reason::Vacation | Reason::Delivered)) = e.hint {
        return h;
    }
    let text = normalise(e.text);
    let temporary = e
        .status
        .map_or(e.code.is_some_and(|c| c / 100 == 4), |s| s.class == 4);
    let note = normalise(e.note);
    // Content is judged only once it is sent: spam words in a refusal of
    // the greeting, HELO, MAIL or RCPT are about the sending host.
    let before_content = matches!(
        e.command,
        Some(
            CommandKind::Greeting
                | CommandKind::Helo
                | CommandKind::Ehlo
                | CommandKind::Mail
                | CommandKind::Rcpt
        )
    );
    let not_here = |r: Reason| before_content && r == Reason::SpamDetected;
    let specific = first_class_but(&SPECIFIC_SETS, &text, not_here);
    // A local delivery program failed (an `X-Unix` diagnostic): only the
    // classes tried before `mailererror` (a full mailbox, ...) say more.
    if e.hint == Some(Reason::MailerError) {
        return match specific {
            Some(r) if rank(r) < rank(Reason::MailerError) => refine(r, e, &text, temporary),
            _ => Reason::MailerError,
        };
    }
    if let Some(r) = specific {
        return refine(r, e, &text, temporary);
    }
    if let Some(h) = e.hint {
        return h;
    }
    if let Some(r) = first_class(&EXPIRY_SETS, &text).or_else(|| first_class(&EXPIRY_SETS, &note)) {
        return r;
    }
    let status = e
        .status
        .and_then(|s| reason_from_status(s).map(|r| (r, weak_status(s))));
    if let Some((r, false)) = status {
        return by_command(r, e);
    }
    if let Some(r) = first_class_but(&SPECIFIC_SETS, &note, not_here) {
        return refine(r, e, &note, temporary);
    }
    // The command refused says more than a status of little detail: a
    // refused `MAIL` is about the sender, a refused greeting or `HELO`
    // about the sending host.
    match e.command {
        Some(CommandKind::Mail) => return Reason::Rejected,
        Some(CommandKind::Greeting | CommandKind::Helo | CommandKind::Ehlo) => {
            return Reason::Blocked;
        }
        _ => {}
    }
    if let Some((r, true)) = status {
        return by_command(r, e);
    }
    if let Some(r) = first_class(&LATE_SETS, &text).or_else(|| first_class(&LATE_SETS, &note)) {
        return r;
    }
    if action == "delayed" || action == "expired" {
        return Reason::Expired;
    }
    if let Some(s) = e.status {
        match s.subject {
            7 => return Reason::SecurityError,
            6 => return Reason::ContentError,
            _ => {}
        }
    }
    match e.code {
        Some(521 | 556) => return Reason::NotAccept,
        Some(500..=504) => return Reason::SyntaxError,
        _ => {}
    }
    if text.trim().is_empty() && note.trim().is_empty() {
        Reason::Undefined
    } else {
        Reason::OnHold
    }
}

/// A wording class, adjusted by the rest of the evidence: a name that does
/// not resolve *now* (a temporary failure) is a DNS failure; a size over a
/// per-mailbox limit (`x.2.3`) is `exceedlimit`; relaying refused until
/// the client authenticates is `securityerror`; then [`by_command`].
fn refine(r: Reason, e: &Evidence<'_>, text: &str, temporary: bool) -> Reason {
    match r {
        Reason::HostUnknown if temporary => Reason::NetworkError,
        Reason::MesgTooBig if e.status.is_some_and(|s| (s.subject, s.detail) == (2, 3)) => {
            Reason::ExceedLimit
        }
        Reason::NoRelaying if text.to_ascii_lowercase().contains("authenticat") => {
            Reason::SecurityError
        }
        r => by_command(r, e),
    }
}

/// What an address refusal means depends on the command it answered: in
/// reply to `MAIL` the refused address is the sender's (`rejected`); after
/// the content, an unknown user is the mailbox refusing the message
/// (`filtered`), unless the status says the address itself is bad
/// (`x.1.1`); so is an unknown user with a policy status (`x.7.x`) that
/// was not a reply to `RCPT`.
fn by_command(r: Reason, e: &Evidence<'_>) -> Reason {
    match (r, e.command) {
        (Reason::UserUnknown | Reason::HostUnknown, Some(CommandKind::Mail)) => Reason::Rejected,
        (Reason::UserUnknown, Some(CommandKind::Data | CommandKind::DataEnd))
            if e.status.is_none_or(|s| (s.subject, s.detail) != (1, 1)) =>
        {
            Reason::Filtered
        }
        // A policy status (`x.7.x`) on an unknown user: a filter refused it.
        (Reason::UserUnknown, c)
            if c != Some(CommandKind::Rcpt) && e.status.is_some_and(|s| s.subject == 7) =>
        {
            Reason::Filtered
        }
        // A remote reply of an unknown user, with neither the command nor
        // a status saying it was the address (`RCPT`, `x.1.x`): the
        // message may have been refused after its content, by a filter.
        (Reason::UserUnknown, None | Some(CommandKind::Other))
            if e.code.is_some() && e.status.is_none_or(|s| s.subject == 0) =>
        {
            Reason::Filtered
        }
        (r, _) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(s: &str) -> Option<EnhancedCode> {
        EnhancedCode::parse(s)
    }

    #[test]
    fn names_round_trip_and_are_unique() {
        for r in Reason::ALL {
            assert_eq!(Reason::from_name(r.as_str()), Some(r));
        }
        let mut names: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len());
    }

    #[test]
    fn wording_outranks_a_status_that_says_less() {
        let e = Evidence {
            text: "550 5.1.1 <a@b>... Mailbox Full",
            status: st("5.1.1"),
            code: Some(550),
            ..Evidence::default()
        };
        assert_eq!(decide(&e), Reason::MailboxFull);
    }

    #[test]
    fn status_decides_when_the_words_say_nothing() {
        for (status, want) in [
            ("5.1.1", Reason::UserUnknown),
            ("5.1.2", Reason::HostUnknown),
            ("5.2.2", Reason::MailboxFull),
            ("4.4.7", Reason::Expired),
            ("5.7.26", Reason::AuthFailure),
            ("5.3.4", Reason::MesgTooBig),
        ] {
            let e = Evidence {
                text: "550 nope",
                status: st(status),
                ..Evidence::default()
            };
            assert_eq!(decide(&e), want, "{status}");
        }
    }

    #[test]
    fn the_refused_command_decides_when_nothing_else_does() {
        let mut e = Evidence {
            text: "550 go away",
            command: Some(CommandKind::Mail),
            ..Evidence::default()
        };
        assert_eq!(decide(&e), Reason::Rejected);
        e.command = Some(CommandKind::Ehlo);
        assert_eq!(decide(&e), Reason::Blocked);
        e.command = None;
        assert_eq!(decide(&e), Reason::OnHold);
        e.text = "";
        assert_eq!(decide(&e), Reason::Undefined);
        e.action = Some("delayed");
        assert_eq!(decide(&e), Reason::Expired);
    }

    #[test]
    fn spam_words_before_the_content_are_about_the_sending_host() {
        let mut e = Evidence {
            text: "554 5.7.1 Client host blocked using zen.spamhaus.org; your IP sends spam",
            command: Some(CommandKind::Rcpt),
            ..Evidence::default()
        };
        assert_eq!(decide(&e), Reason::Blocked);
        e.command = Some(CommandKind::DataEnd);
        assert_eq!(decide(&e), Reason::SpamDetected);
    }

    #[test]
    fn unknown_user_after_the_content_is_filtered() {
        let e = Evidence {
            text: "550 Unknown user",
            command: Some(CommandKind::DataEnd),
            ..Evidence::default()
        };
        assert_eq!(decide(&e), Reason::Filtered);
    }

    #[test]
    fn delivered_status_is_not_a_failure() {
        let e = Evidence {
            text: "250 ok",
            status: st("2.0.0"),
            ..Evidence::default()
        };
        assert_eq!(decide(&e), Reason::Delivered);
        assert!(Reason::Delivered.is_not_a_failure());
    }

    proptest::proptest! {
        #[test]
        fn any_text_gets_exactly_one_reason(text in "\\PC{0,400}", code in 0u16..700) {
            let e = Evidence { text: &text, code: Some(code), ..Evidence::default() };
            let r = decide(&e);
            proptest::prop_assert!(Reason::ALL.contains(&r));
        }
    }
}
