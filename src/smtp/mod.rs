//! The SMTP wire: replies (raw bytes kept), commands, line framing and
//! message-content framing, EHLO capabilities. No policy lives here: this
//! module says what the bytes *are*, never what to do about them.

pub mod command;
pub mod ehlo;
pub mod escape;
pub mod framing;
pub mod reply;

pub use command::CommandKind;
pub use reply::{EnhancedCode, Reply, ReplyCode, ReplyError, ReplyLimits, ReplyParser};
