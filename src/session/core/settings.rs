//! What the session core knows of its listener, upstream and limits.
//!
//! One [`CoreSettings`] is shared (behind an `Arc`) by every session of a
//! listener; it never holds anything of one session.

use std::net::IpAddr;

use crate::config::{BareLineEndings, Config, Mode};
use crate::smtp::ReplyLimits;

/// What the core needs to know of its listener, upstream and limits.
#[derive(Clone, Debug)]
pub struct CoreSettings {
    /// Name replyfix uses in its own replies.
    pub hostname: String,
    pub listener: String,
    pub upstream: String,
    pub client: Option<IpAddr>,
    pub mode: Mode,
    pub bare_line_endings: BareLineEndings,
    /// Longest command line (R1).
    pub max_command_line: usize,
    /// Longest SASL line (P4).
    pub max_sasl_line: usize,
    /// Outstanding commands before the core stops reading the client (R1, R2).
    pub max_pipeline: usize,
    /// Error replies before `421 4.7.0 too many errors` (R4).
    pub max_errors: u32,
    /// Largest message content, when set.
    pub max_message_size: Option<u64>,
    /// Bound on what the core reads from a client whose content it no longer
    /// forwards (D2 reject, F2 drain).
    pub max_drain: u64,
    pub reply_limits: ReplyLimits,
    /// A certificate is configured: STARTTLS can be offered (T1).
    pub tls_offered: bool,
    /// Commands other than EHLO/HELO/STARTTLS/NOOP/RSET/QUIT need TLS first
    /// (T5).
    pub require_tls: bool,
    /// Emit [`Event::Transcript`] for every judged reply (for `replay`).
    pub record: bool,
    /// The session id, for transcript entries.
    pub session_id: String,
}

impl CoreSettings {
    /// The settings every session of `listener` (relaying to `upstream`)
    /// starts from; the listener's TLS facts (`tls_offered`,
    /// `require_tls`) are the caller's to set.
    pub fn from_config(config: &Config, listener: &str, upstream: &str) -> CoreSettings {
        let l = &config.limits;
        CoreSettings {
            hostname: config.hostname.clone(),
            listener: listener.to_string(),
            upstream: upstream.to_string(),
            client: None,
            mode: config.mode,
            bare_line_endings: config.bare_line_endings,
            max_command_line: l.max_command_line,
            max_sasl_line: l.max_sasl_line,
            max_pipeline: l.max_pipeline,
            max_errors: l.max_errors,
            max_message_size: l.max_message_size,
            max_drain: l
                .max_message_size
                .unwrap_or(64 * 1024 * 1024)
                .max(1024 * 1024),
            reply_limits: ReplyLimits {
                max_line: l.max_reply_line,
                max_reply: l.max_reply,
                ..ReplyLimits::default()
            },
            tls_offered: false,
            require_tls: false,
            record: config.transcript.is_some(),
            session_id: String::new(),
        }
    }

    /// Defaults suitable for tests: limits as in the default configuration.
    pub fn for_tests() -> Self {
        CoreSettings {
            hostname: "replyfix.test".into(),
            listener: "default".into(),
            upstream: "default".into(),
            client: None,
            mode: Mode::Enforce,
            bare_line_endings: BareLineEndings::Reject,
            max_command_line: 2048,
            max_sasl_line: 12288,
            max_pipeline: 100,
            max_errors: 20,
            max_message_size: None,
            max_drain: 64 * 1024 * 1024,
            reply_limits: ReplyLimits::default(),
            tls_offered: false,
            require_tls: false,
            record: false,
            session_id: String::new(),
        }
    }
}
