//! What judging a reply takes and gives: the session facts a rule can
//! match ([`SessionFacts`]), what a rule does ([`Action`]) and the outcome
//! ([`Verdict`]). Plain data; nothing here judges.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::smtp::{CommandKind, Reply};

/// The session facts a rule's `when:` and an example can name, as written
/// in rule files: one per field of [`SessionFacts`] besides `command`.
pub(crate) const FACT_KEYS: [&str; 7] = [
    "client_tls",
    "upstream_tls",
    "authenticated",
    "recipients_accepted",
    "client",
    "listener",
    "upstream",
];

/// What is known about the session when a reply is judged (P1: the context
/// comes from pairing the reply with its command, never from the reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionFacts<'a> {
    /// The command this reply answers.
    pub command: CommandKind,
    /// The client leg is TLS (STARTTLS done or implicit TLS).
    pub client_tls: bool,
    /// The upstream leg is TLS.
    pub upstream_tls: bool,
    /// The upstream accepted the client's AUTH (RFC 4954 `235`).
    pub authenticated: bool,
    /// Recipients the upstream accepted in the current transaction.
    pub recipients_accepted: u32,
    /// The client's address, when known.
    pub client: Option<IpAddr>,
    /// The name of the listener the client connected to.
    pub listener: &'a str,
    /// The name of the upstream this session relays to.
    pub upstream: &'a str,
}

impl<'a> SessionFacts<'a> {
    /// Facts for `command` with everything else false, zero, `None` or empty.
    pub fn new(command: CommandKind) -> Self {
        SessionFacts {
            command,
            client_tls: false,
            upstream_tls: false,
            authenticated: false,
            recipients_accepted: 0,
            client: None,
            listener: "",
            upstream: "",
        }
    }
}

/// What a rule does to a reply it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Leave the reply exactly as received.
    Keep,
    /// Keep the code and lines and add one explanatory last line.
    Annotate,
    /// New code and enhanced code on every line (W1), optionally new text,
    /// optionally followed by an annotation line.
    Remap,
}

impl Action {
    /// `keep`, `annotate` or `remap` (for logs and metrics).
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Annotate => "annotate",
            Action::Remap => "remap",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of judging one reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No rule matched: the reply passes through byte for byte.
    NoMatch,
    /// A rule matched and said to keep the reply as it is.
    Keep { rule: Arc<str> },
    /// A rule matched and the client should see `reply` instead of the
    /// original. Never produced for a 2xx, 3xx or `421` original (W2).
    Rewrite {
        rule: Arc<str>,
        action: Action,
        reply: Reply,
    },
}

impl Verdict {
    /// The id of the rule that decided, if any.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Verdict::NoMatch => None,
            Verdict::Keep { rule } | Verdict::Rewrite { rule, .. } => Some(rule),
        }
    }

    /// What the client should see: the rewritten reply, or `original`.
    pub fn reply<'a>(&'a self, original: &'a Reply) -> &'a Reply {
        match self {
            Verdict::Rewrite { reply, .. } => reply,
            _ => original,
        }
    }

    /// The action taken: `None` when no rule matched.
    pub fn action(&self) -> Option<Action> {
        match self {
            Verdict::NoMatch => None,
            Verdict::Keep { .. } => Some(Action::Keep),
            Verdict::Rewrite { action, .. } => Some(*action),
        }
    }
}
