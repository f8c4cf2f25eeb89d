//! Why a recipient bounced, as one machine-readable word in the vocabulary
//! bounce processors already use (`userunknown`, `mailboxfull`, `blocked`,
//! ...; the list and how each is decided are in `docs/debugging-bounces.md`).
//!
//! The reason is decided from the evidence of one recipient together: the
//! words of the remote reply or the bounce's own explanation (classes of
//! phrases servers use, never a message of a particular sample), the RFC
//! 3463 status, the reply code, the command it answered and the DSN
//! `Action`. Pure functions; no I/O. Every pattern is a `regex` (linear
//! time), run over text the caller has capped.

use std::fmt;
use std::sync::LazyLock;

use regex::{Regex, RegexSet};

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

/// One class of wording: the reason and the phrases that say it.
struct Class {
    reason: Reason,
    phrases: &'static [&'static str],
}

/// The first tier: phrases specific enough to outrank the status code (a
/// `5.1.1` whose text says "mailbox full" is a full mailbox). Tried in
/// this order; the first class with a matching phrase decides.
const SPECIFIC: &[Class] = &[
    Class {
        reason: Reason::MailboxFull,
        phrases: &[
            r"mail ?(box|folder) (is |was )?(full|over ?quota|overfull|exceeds)",
            r"(mailbox|mail box|account|user|inbox|recipient)('s)? (storage |disk )?(quota|size limit|capacity) (exceeded|reached|is full|full)",
            r"\bover ?quota\b",
            r"quota (has been |was )?exceed",
            r"(storage|disk|mailbox) quota",
            r"exceeded (the )?(storage|mailbox|disk|its|their|his|her) (allocation|quota|size|limit)",
            r"insufficient (disk |storage )?space (for|in) (the )?(user|mailbox|recipient)",
            r"(mailbox|inbox) (is )?(out of|has no) (storage|space)",
            r"number of messages in (the )?recipient'?s? mailbox exceeded",
            r"too many messages in (this|the) mailbox",
            r"recipient'?s? mailbox (is )?full",
            r"\bfull mailbox\b",
            r"mailbox full",
            r"user (is )?over (the )?(limit|quota)",
        ],
    },
    Class {
        reason: Reason::MesgTooBig,
        phrases: &[
            r"message (size |length )?(is )?(too (big|large)|exceeds? (the )?(maximum|size|limit))",
            r"(mail|message|email) size (limit|exceeded|too large)",
            r"exceeds? (the )?(fixed )?maximum (allowed )?(message )?size",
            r"size (of (the )?message )?exceeds",
            r"message too big",
            r"too large for (the|this) (system|server)",
        ],
    },
    Class {
        reason: Reason::Suspend,
        phrases: &[
            r"(account|mailbox|mail box|user|recipient|address)( has been| is| was)? (temporarily |permanently )?(disabled|suspended|deactivated|inactive|frozen|locked|closed|blocked by (the )?administrator)",
            r"\bdisabled (recipient|account|mailbox|user)",
            r"(recipient|user|account|mailbox) (is )?(no longer|not) active",
            r"inactive (user|account|mailbox|recipient)",
            r"user account disabled",
            r"\b(account|mailbox)\b.{0,40}\b(is|has been|was) (temporarily |permanently )?(disabled|suspended|deactivated|inactive|frozen|closed|blocked)",
            r"\b(user|account|mailbox)\b.{0,60}\b(temporar(y|ily) )?locked\b",
            r"account (has )?expired",
        ],
    },
    Class {
        reason: Reason::HasMoved,
        phrases: &[
            r"\bhas moved\b",
            r"no longer (on|at|with) (this|the) server",
            r"mailbox (has )?moved",
            r"address (has )?changed",
        ],
    },
    Class {
        reason: Reason::NoRelaying,
        phrases: &[
            r"relay(ing)? (access |attempt )?(denied|not (allowed|permitted)|prohibited|refused)",
            r"(not permitted|unable|not allowed|cannot|can't|we do not|will not|won't) (to )?relay",
            r"\bno relaying\b",
            r"relay not permitted",
            r"not a gateway",
            r"address is not verified",
        ],
    },
    Class {
        reason: Reason::AuthFailure,
        phrases: &[
            r"\bdmarc\b",
            r"\bspf\b.{0,40}\b(fail|failed|failure|softfail|check|reject|not (authori[sz]ed|permitted|pass))",
            r"\b(fail|failed|failure)\b.{0,20}\bspf\b",
            r"\bdkim\b.{0,40}\b(fail|failed|failure|invalid|missing|signature|not (pass|valid))",
            r"authentication checks? (failed|did not pass)",
            r"unauthenticated (e-?mail|message)",
            r"(fails?|failed|does not pass|did not pass) (to pass )?(the )?(sender )?authentication (check|information)",
            r"does not have authentication information",
            r"sender policy framework",
            r"\bbad spf\b",
            r"not (designated|authori[sz]ed|permitted) (to send|sender)",
        ],
    },
    Class {
        reason: Reason::RequirePtr,
        phrases: &[
            r"\b(ptr|rdns|reverse[- ]?dns|reverse (lookup|hostname|name|address|dns))\b.{0,40}\b(not|no|fail|failed|missing|required|mismatch|invalid|unresolv)",
            r"\b(no|missing|without|invalid|mismatch(ed|ing)?|bad|lacks?( a)?) (valid )?(ptr|rdns|reverse[- ]?dns|reverse (lookup|hostname|name))",
            r"cannot find your (reverse )?hostname",
            r"reverse (dns|lookup) (for|of)",
            r"(ip|address) (name )?lookup failed",
            r"not have a (valid )?(ptr|reverse)",
            r"dns ptr",
            r"client host rejected: cannot find your",
            r"unverif(y|i)able sending ip",
            r"mismatch(es)? (the )?(client|connecting|sending) ip",
        ],
    },
    Class {
        reason: Reason::NotCompliantRfc,
        phrases: &[
            r"\brfc ?(2822|5322|822|1123|5321|2045|6532)\b",
            r"not (rfc|standards?)[- ]complian",
            r"duplicate header",
            r"multiple (addresses|senders|mailboxes) in (the )?(from|sender|to)",
            r"(multiple|more than one) (from|to|subject|date|message-id|sender) (header|field)",
            r"(header|message) (is )?not (rfc|standards?)",
            r"(missing|no|invalid|malformed) (date|from|message-id|message id|subject) (header|field)",
            r"header (syntax|format) (error|invalid)",
        ],
    },
    Class {
        reason: Reason::BadReputation,
        phrases: &[r"reputation", r"user complaints", r"sender score"],
    },
    Class {
        reason: Reason::VirusDetected,
        phrases: &[r"\bvirus", r"\bmalware\b", r"\binfected\b", r"\btrojan\b"],
    },
    Class {
        reason: Reason::SpamDetected,
        phrases: &[
            r"\bspam",
            r"\bunsolicited\b",
            r"\bube\b",
            r"\bjunk (e-?)?mail\b",
            r"bulk (e-?)?mail",
            r"content (filter|rejected|policy)",
            r"message (content )?(was )?(rejected|refused|blocked) (by|as|due)",
            r"(rejected|blocked|refused|identified|classified|detected|flagged) (as|by (our|the) (anti-?spam|content|mail) (filter|system|engine|policy))",
            r"(suspicious|prohibited|objectionable) content",
            r"\bphish",
            r"\buce\b",
        ],
    },
    Class {
        reason: Reason::PolicyViolation,
        phrases: &[
            r"\bpolic(y|ies) (reasons?|violation|restriction)",
            r"violat\w* .{0,30}polic",
            r"(not|never) (accepted|allowed) (for|by|due to) (local |our )?polic",
            r"(prohibited|forbidden|banned|disallowed|not allowed) (attachment|file|extension|content type)",
            r"attachment.{0,40}(not allowed|prohibited|forbidden|blocked|banned)",
            r"\bheader error",
            r"content presents a potential security issue",
        ],
    },
    Class {
        reason: Reason::MailerError,
        phrases: &[
            r"mailer error",
            r"command output:",
            r"\bx-unix\b",
            r"(command|program|pipe|delivery agent|mda) (died|failed|crashed|exited)",
            r"unknown mailer",
            r"local delivery (failed|error)",
            r"procmail",
            r"exit (code|status) \d",
        ],
    },
    Class {
        reason: Reason::Rejected,
        phrases: &[
            r"\bsender\b.{0,30}\b(rejected|refused|denied|not (allowed|permitted|authori[sz]ed|accepted)|blocked|blacklisted|unknown|invalid|verify failed)",
            r"\b(rejected|refused|denied|blocked|invalid|unknown|bad|unverif\w+|disallowed) (envelope )?sender",
            r"(from|return|envelope)[- ](address|path)\b.{0,20}\b(rejected|refused|invalid|not allowed)",
            r"domain of sender address",
            r"sender (address )?domain (must|does not|doesn'?t|is not|not)",
            r"mail from .{0,60}(rejected|refused|denied)",
            r"sender was rejected",
            r"purported responsible address",
            r"\bfrom:? ?(domain|address) is (invalid|not valid)",
            r"provide a valid from",
            r"\baddress (that )?(has been|is) (black|block)listed",
            r"your (e-?mail )?address (has been |is )?(blocked|blacklisted|banned)",
            r"not accepting mail from this sender",
        ],
    },
    Class {
        reason: Reason::Filtered,
        phrases: &[
            r"recipient'?s? preferences",
            r"(rejected|refused|blocked) by (the )?recipient'?s? (filter|settings|rules)",
            r"\bdomain filter",
        ],
    },
    Class {
        reason: Reason::UserUnknown,
        phrases: &[
            r"\b(user|recipient|mailbox|mail box|address|account|addressee|local[- ]?part|e-?mail address|destination)s?( name)?( address)?\b.{0,40}\b(unknown|not (found|known|listed|exist|valid|recogni[sz]ed|present)|does(n'?t| not) exist|is invalid|invalid|non-?existent)",
            r"\b(unknown|invalid|non-?existent|no such|bad|unrecogni[sz]ed|illegal) (final delivery |local |virtual |destination |e-?mail )?(userid|user|recipient|mailbox|address|account|person|addressee|alias|local[- ]?part)",
            r"no (mailbox|mail box|account|user|one|such (user|person|recipient|mailbox|address)) (here |at this address )?(by|with) that name",
            r"\bno such (user|person|recipient|mailbox|address|local user|account)",
            r"\bno (mailbox|account|user) (here|found|available)",
            r"not a (valid|known|local) (user|recipient|mailbox|address)",
            r"recip(ient)?notfound",
            r"requested action not taken: mailbox unavailable",
            r"mailbox (is )?(unavailable|not available|not present)",
            r"(user|recipient|address|mailbox) (lookup|verification) failed",
            r"not listed in (the )?(public )?(name|address) (&|and) address book",
            r"user (doesn'?t|does not) have an? \S+ account",
            r"(e-?mail )?account (that )?you tried to reach does not exist",
            r"\bbadrcptto\b",
            r"(unrouteable|unroutable) address",
            r"address (rejected|refused): ?(user|recipient|unknown|invalid)",
            r"there is no one at this address",
            r"no valid recipients?\b",
            r"address (couldn'?t|could not|cannot|can't) be found",
            r"not our customer",
            r"this address no longer accepts mail",
            r"undeliverable address",
            r"invalid (e-?mail )?address",
            r"address (does not|doesn't) exist",
        ],
    },
    Class {
        reason: Reason::HostUnknown,
        phrases: &[
            r"\b(host|domain|hostname|mail domain|recipient domain)( name)? (is )?(unknown|not found|does(n'?t| not) exist|not known|invalid)",
            r"\b(unknown|invalid|non-?existent|no such) (host|domain|hostname)",
            r"(unrouteable|unroutable) (mail )?domain",
            r"\bnxdomain\b",
            r"(^|\s)([a-z0-9-]+\.)+[a-z]{2,}\.? does not exist",
            r"couldn'?t find any host",
            r"host or domain name not found",
            r"name or service not known",
            r"bad destination system address",
            r"domain (is )?(not reachable|unreachable)",
            r"domain (name )?(lookup|resolution) failed",
            r"unable to resolve (the )?(host|domain)",
        ],
    },
    Class {
        reason: Reason::TooManyConn,
        phrases: &[
            r"too many (concurrent |simultaneous |open |smtp )?(connections|sessions)",
            r"connection (count|rate )?limit",
            r"too many (connections|sessions) from",
            r"frequency limit",
            r"too many recipients\.?\s*$",
        ],
    },
    Class {
        reason: Reason::Speeding,
        phrases: &[
            r"rate[- ]?limit",
            r"too (many|much) (messages|mail|e-?mails|traffic)",
            r"sending (rate|too fast)",
            r"\bthrottl",
            r"slow down",
            r"(receiving|sending) (mail |messages )?at a rate",
            r"too many recipients (this|per|an?|in the last) (hour|day|minute)",
            r"(exceeded|over) (the |your )?(hourly |daily )?(sending|message|rate) (limit|quota)",
        ],
    },
    Class {
        reason: Reason::Blocked,
        phrases: &[
            r"block ?list",
            r"black ?list",
            r"deny ?list",
            r"\b(dnsbl|rbl|spamhaus|spamcop|sorbs|barracudacentral|uceprotect)\b",
            r"\blisted (in|on|at|by)\b",
            r"(your|sending|client|the) (ip|host|server|network)\b.{0,40}\b(blocked|banned|rejected|refused|not allowed|denied|listed)",
            r"\b(blocked|banned|rejected|refused) (sending |client |your |the |connecting )?(ip|host|server|network)",
            r"(access|connection) (denied|refused|rejected)\b.{0,40}\b(ip|host|\d+\.\d+\.\d+\.\d+)",
            r"client host .{0,80} (blocked|rejected|refused)",
            r"\bblocked\b",
            r"(helo|ehlo)\b.{0,40}\b(rejected|refused|invalid|denied)",
            r"my name was rejected",
            r"service refused",
            r"is an open relay",
            r"use (the )?(smtp|mail) server of your (isp|provider)",
            r"no access from (mail )?server",
        ],
    },
    Class {
        reason: Reason::FailedStartTls,
        phrases: &[
            r"\bstarttls\b",
            r"\btls\b.{0,30}\b(fail|failed|failure|error|required|negotiat|handshake)",
            r"(must|should) (use|issue) (a )?starttls",
            r"(does not|doesn'?t) (support|offer) (tls|starttls)",
            r"certificate (verification|validation|expired|error|failed)",
        ],
    },
    Class {
        reason: Reason::ContentError,
        phrases: &[
            r"media (error|not supported|type)",
            r"8-?bit (data|characters)",
            r"content(-| )type",
            r"(invalid|improper|malformed|illegal) (mime|header|content|characters|encoding)",
            r"conversion (required|failed|not supported)",
        ],
    },
    Class {
        reason: Reason::SystemFull,
        phrases: &[
            r"(mail )?(system|disk|server|spool) (is )?(full|out of (storage|space))",
            r"insufficient system storage",
            r"no space left",
            r"out of (disk|storage) space",
        ],
    },
    Class {
        reason: Reason::NotAccept,
        phrases: &[
            r"(does not|doesn'?t|do not|will not) accept (any )?(e-?)?mail",
            r"not accepting (network )?(messages|mail)",
            r"accepts no mail",
            r"null mx",
            r"indicated no smtp service",
            r"no mx (record|host|server)s?",
            r"(couldn'?t|could not|cannot|unable to) find (a|any) mail exchanger",
            r"no mail (exchanger|servers?) (for|found)",
        ],
    },
    Class {
        reason: Reason::NetworkError,
        phrases: &[
            r"\bdns (error|failure|lookup|query|problem|timeout)",
            r"name ?serv(ice|er) (error|failure|reply|problem|timeout)",
            r"lookup fail",
            r"routing loop",
            r"(mail|message) loop",
            r"loop(s)? (back to myself|detected)",
            r"too many hops",
            r"hop count exceeded",
        ],
    },
    Class {
        reason: Reason::SystemError,
        phrases: &[
            r"system (error|failure|problem)",
            r"internal (server |system |software )?(error|failure|problem)",
            r"server (error|failure)",
            r"local (error|problem|failure)",
            r"service currently unavailable",
            r"\bldap\b",
            r"directory (server|service|lookup)",
            r"i/o error",
            r"transaction failed",
            r"(queue file|disk) write error",
            r"unable to deliver message after multiple retries",
        ],
    },
    Class {
        reason: Reason::SecurityError,
        phrases: &[
            r"security (error|policy|violation)",
            r"(encryption|tls) (required|needed)",
            r"authentication (required|is required|credentials|mechanism)",
            r"not authori[sz]ed",
            r"delivery not authori[sz]ed",
            r"must (authenticate|log ?in)",
            r"unauthenticated senders?",
        ],
    },
    Class {
        reason: Reason::SyntaxError,
        phrases: &[
            r"syntax error",
            r"command (not recogni[sz]ed|unrecogni[sz]ed|not implemented|unknown)",
            r"unknown command",
            r"bad sequence of commands",
            r"line too long",
            r"(command|parameter)s? (parameter )?not implemented",
            r"improper sequence",
        ],
    },
];

/// The last tier of wording: phrases that say only how it ended (a queue
/// lifetime, an automatic reply), tried after the status code.
/// The reporting MTA's own words that it gave up after its queue lifetime:
/// tried after what the bounce format says itself, before the status (a
/// `4.4.2` that expired is `expired`).
const EXPIRY: &[Class] = &[Class {
    reason: Reason::Expired,
    phrases: &[
        r"(queue|retry) (too long|time(out)? (exceeded|not reached|expired))",
        r"too long in (the )?queue",
        r"(delivery|message|retry) (time|period)? ?(has )?expired",
        r"(message|envelope) expired",
        r"not delivered within",
        r"could not (be )?deliver(ed)? for (the last|more than)",
        r"has not been delivered for",
        r"(was|has been) (undeliverable|delayed) for",
    ],
}];

const LATE: &[Class] = &[
    Class {
        reason: Reason::Expired,
        phrases: &[
            r"(delivery|message) (has been |is )?delayed",
            r"giving up",
            r"gave up",
            r"maximum (time|retries|retry)",
            r"will not try again",
            r"not going to try again",
        ],
    },
    // A connection that kept failing until the sender gave up.
    Class {
        reason: Reason::Expired,
        phrases: &[
            r"network (error|is unreachable|unreachable)",
            r"connection (timed out|refused|reset|lost|closed|died|failure)",
            r"(could not|couldn'?t|unable to|wasn'?t able to|failed to|cannot) (connect|establish|open)",
            r"no route to host",
            r"socket error",
            r"host (is )?(not reachable|unreachable)",
            r"timed? ?out",
        ],
    },
    Class {
        reason: Reason::Vacation,
        phrases: &[
            r"out of (the )?office",
            r"on (vacation|holiday|leave)",
            r"auto(matic)?[- ]?repl(y|ies)",
        ],
    },
];

struct Compiled {
    sets: Vec<(Reason, RegexSet)>,
}

fn compile(classes: &[Class]) -> Compiled {
    Compiled {
        sets: classes
            .iter()
            .map(|c| {
                let pats = c.phrases.iter().map(|p| format!("(?i){p}"));
                (
                    c.reason,
                    RegexSet::new(pats).expect("static reason phrases compile"),
                )
            })
            .collect(),
    }
}

static SPECIFIC_SETS: LazyLock<Compiled> = LazyLock::new(|| compile(SPECIFIC));
static LATE_SETS: LazyLock<Compiled> = LazyLock::new(|| compile(LATE));
static EXPIRY_SETS: LazyLock<Compiled> = LazyLock::new(|| compile(EXPIRY));
static SPACES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").expect("static regex"));

/// The most text a reason is looked for in (bytes); the words that decide
/// come first in every reply and explanation.
pub const MAX_REASON_TEXT: usize = 8 * 1024;

/// Where `r`'s class is in the order of the specific classes.
fn rank(r: Reason) -> usize {
    SPECIFIC
        .iter()
        .position(|c| c.reason == r)
        .unwrap_or(usize::MAX)
}

fn first_class(sets: &Compiled, text: &str) -> Option<Reason> {
    sets.sets
        .iter()
        .find(|(_, set)| set.is_match(text))
        .map(|(r, _)| *r)
}

/// The reason the words of `text` give, from the wording classes alone
/// (specific classes first, then the late ones); `None` when no phrase of
/// any class is in it.
pub fn reason_from_text(text: &str) -> Option<Reason> {
    let t = normalise(text);
    first_class(&SPECIFIC_SETS, &t)
        .or_else(|| first_class(&EXPIRY_SETS, &t))
        .or_else(|| first_class(&LATE_SETS, &t))
}

fn normalise(text: &str) -> String {
    let cut = floor_char_boundary(text, MAX_REASON_TEXT);
    SPACES.replace_all(&text[..cut], " ").into_owned()
}

/// The largest char boundary at or below `at`.
pub fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
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
/// "How the reason is decided"):
///
/// 1. a delivered status (`2.x.x`) or `Action: delivered` is `delivered`;
/// 2. the specific wording classes over the text;
/// 3. what the bounce format says in its own fixed words (a delay notice,
///    a connection it could not make);
/// 4. the status code's own meaning (RFC 3463, RFC 7372);
/// 5. the late wording classes (expiry, connection failures, automatic
///    replies);
/// 6. the command refused: `MAIL` is `rejected`, the greeting, `HELO` or
///    `EHLO` is `blocked`;
/// 7. `Action: delayed` is `expired`; a `x.7.x` status `securityerror`, a
///    `x.6.x` one `contenterror`; a reply code 521 or 556 `notaccept`, 500
///    to 504 `syntaxerror`;
/// 8. any other text is `onhold`; nothing at all `undefined`.
///
/// A user-unknown phrase in a reply to the message content (after `DATA`)
/// is `filtered`: the address was accepted, the mailbox refused the message.
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
    let specific = first_class(&SPECIFIC_SETS, &text);
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
    if let Some(r) = first_class(&SPECIFIC_SETS, &note) {
        return refine(r, e, &note, temporary);
    }
    if let Some((r, true)) = status {
        return by_command(r, e);
    }
    if let Some(r) = first_class(&LATE_SETS, &text).or_else(|| first_class(&LATE_SETS, &note)) {
        return r;
    }
    match e.command {
        Some(CommandKind::Mail) => return Reason::Rejected,
        Some(CommandKind::Greeting | CommandKind::Helo | CommandKind::Ehlo) => {
            return Reason::Blocked;
        }
        _ => {}
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
