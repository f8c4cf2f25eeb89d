//! The wording classes a [`Reason`] is read from: for each reason, the
//! phrases servers and MTAs use to say it ("mailbox full", "user unknown",
//! "relay access denied", ...), in three tiers tried at different points of
//! [`super::reason::decide`]. Phrases are classes of wording, never the
//! message of one sample; each is a lower-case `regex` (linear time, ASCII
//! classes) run over at most [`MAX_REASON_TEXT`] bytes of lower-cased
//! text. No I/O.

use std::sync::LazyLock;

use regex::Regex;
use regex::bytes::RegexSet;

use super::reason::Reason;
use super::text::floor_char_boundary;

/// One class of wording: the reason and the phrases that say it.
pub(super) struct Class {
    reason: Reason,
    phrases: &'static [&'static str],
}

/// The first tier: phrases specific enough to outrank the status code (a
/// `5.1.1` whose text says "mailbox full" is a full mailbox). Tried in
/// this order; the first class with a matching phrase decides.
pub(super) const SPECIFIC: &[Class] = &[
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
            r"\b(mailbox|maildir|disk|account)\b.{0,30}\bquota\b",
            r"not (enough|sufficient) (disk )?space (for|in) (the )?(user|mailbox|recipient)",
            r"too many messages (on|in) (the|this) (server|mailbox)",
            r"would exceed (the )?maximum allowed storage",
            r"space has been used up",
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
            r"administrative?l?e?y disabled",
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
            r"\bspam(s|my|ming|med)?\b",
            r"\bspam-like\b",
            r"\bspam ?(score|check|filter|assassin|bouncer|profiler)",
            r"\bantispam\b",
            r"\bunsolicited\b",
            r"\bube\b",
            r"\bjunk (e-?)?mail\b",
            r"bulk (e-?)?mail",
            r"content (filter|rejected|policy)",
            r"message (content )?(was )?(rejected|refused|blocked) (by|as|due)",
            r"(rejected|blocked|refused|identified|classified|detected|flagged) (as|by (our|the) (anti-?spam|content|mail) (filter|system|engine|policy))",
            r"(suspicious|prohibited|objectionable|unacceptable|banned) content",
            r"mail content denied",
            r"recurrent pattern",
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
            r"administrative prohibition",
            r"(empty|null) (envelope )?sender",
            r"bogus mail from",
            r"unroutable sender",
            r"sender not pre-?approved",
            r"list of senders to accept",
            r"not allowed to post to this (mailing )?list",
            r"does not accept mail from",
            r"returned mail not accepted",
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
            r"(user|recipient) (refuses|rejects|refused) to receive",
            r"only accepting mail from specific",
            r"blocked by the recipient",
            r"rejected due to user rules",
            r"message filtered",
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
            r"(unrouteable|unroutable) (mail )?(domain|address)",
            r"all host address lookups failed permanently",
            r"\bnxdomain\b",
            r"(^|\s)([a-z0-9-]+\.)+[a-z]{2,}\.? does not exist",
            r"couldn'?t find any host",
            r"host or domain name not found",
            r"name or service not known",
            r"bad destination system address",
            r"domain (is )?(not reachable|unreachable)",
            r"domain (must|does not|doesn'?t) exist",
            r"unknown domain name",
            r"mail domain .{0,40} is unknown",
            r"\bhost unreachable\b",
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
            r"blocked using",
            r"(blacklisted|blocklisted) by",
            r"\b(bad|banned) (sender|sending|client) ip",
            r"sender ip address rejected",
            r"dynamic (ip|ips|address|pool)",
            r"not (currently )?accepting (mail|connections) from your ip",
            r"(you are|are you) not allowed to connect",
            r"not allowed to send mail from",
            r"open proxy",
            r"looks suspiciously like (a )?spammer",
            r"helo command rejected",
            r"connection (was )?(refused|dropped|reset) by",
            r"connection (was )?dropped",
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
            r"too many .?received.? headers",
        ],
    },
    Class {
        reason: Reason::SystemFull,
        phrases: &[
            r"(mail )?(system|disk|server|spool) (is )?(full|out of (storage|space))",
            r"insufficient system storage",
            r"insufficient disk space",
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
            r"no host found for existing smtp connection",
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
            r"\blooping\b",
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
            r"delivery to (file|pipe) forbidden",
            r"local delivery failed",
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

/// The reporting MTA's own words that it gave up after its queue lifetime:
/// tried after what the bounce format says itself, before the status (a
/// `4.4.2` that expired is `expired`).
pub(super) const EXPIRY: &[Class] = &[Class {
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
        r"all hosts have been failing for a long time",
        r"(has been|was) frozen",
        r"delivery (time )?expired",
        r"message timed out",
        r"(could not|couldn'?t) find a gateway for",
        r"delivery attempts will continue",
        r"not reachable within the allowed queue period",
        r"could not be delivered for more than",
        r"not been collected after",
    ],
}];

/// The last tier: phrases that say only how it ended (connection
/// failures, giving up, an automatic reply), tried after the status code.
pub(super) const LATE: &[Class] = &[
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

pub(super) struct Compiled {
    sets: Vec<(Reason, RegexSet)>,
}

fn compile(classes: &[Class]) -> Compiled {
    Compiled {
        sets: classes
            .iter()
            .map(|c| {
                // Lower-case phrases over lower-cased text, ASCII classes:
                // a tenth of the compile time of `(?i)` with Unicode.
                let pats = c.phrases.iter().map(|p| format!("(?-u){p}"));
                (
                    c.reason,
                    RegexSet::new(pats).expect("static reason phrases compile"),
                )
            })
            .collect(),
    }
}

pub(super) static SPECIFIC_SETS: LazyLock<Compiled> = LazyLock::new(|| compile(SPECIFIC));
pub(super) static LATE_SETS: LazyLock<Compiled> = LazyLock::new(|| compile(LATE));
pub(super) static EXPIRY_SETS: LazyLock<Compiled> = LazyLock::new(|| compile(EXPIRY));
static SPACES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").expect("static regex"));

/// The most text a reason is looked for in (bytes); the words that decide
/// come first in every reply and explanation.
pub const MAX_REASON_TEXT: usize = 8 * 1024;

/// Where `r`'s class is in the order of the specific classes.
pub(super) fn rank(r: Reason) -> usize {
    SPECIFIC
        .iter()
        .position(|c| c.reason == r)
        .unwrap_or(usize::MAX)
}

/// The reason of the first class in `sets` with a phrase in `text`
/// (which [`normalise`] has lower-cased).
pub(super) fn first_class(sets: &Compiled, text: &str) -> Option<Reason> {
    first_class_but(sets, text, |_| false)
}

/// As [`first_class`], passing over the classes `skip` says.
pub(super) fn first_class_but(
    sets: &Compiled,
    text: &str,
    skip: impl Fn(Reason) -> bool,
) -> Option<Reason> {
    sets.sets
        .iter()
        .filter(|(r, _)| !skip(*r))
        .find(|(_, set)| set.is_match(text.as_bytes()))
        .map(|(r, _)| *r)
}

/// `text` cut at [`MAX_REASON_TEXT`] bytes, ASCII lower-cased, runs of
/// white space made one space: what the phrases are matched against.
pub(super) fn normalise(text: &str) -> String {
    let cut = floor_char_boundary(text, MAX_REASON_TEXT);
    SPACES.replace_all(&text[..cut], " ").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phrase_is_lower_case() {
        for class in SPECIFIC.iter().chain(EXPIRY).chain(LATE) {
            for p in class.phrases {
                // Escapes (`\S`, `\d`) aside, no upper-case letter.
                let mut chars = p.chars();
                while let Some(c) = chars.next() {
                    if c == '\\' {
                        chars.next();
                        continue;
                    }
                    assert!(!c.is_ascii_uppercase(), "{:?}: {p}", class.reason);
                }
            }
        }
    }

    #[test]
    fn matching_ignores_case_and_spacing() {
        let t = normalise("550 5.2.2 <A@B>:   MAILBOX\n   FULL");
        assert_eq!(first_class(&SPECIFIC_SETS, &t), Some(Reason::MailboxFull));
    }
}
