//! The bounce formats, one file each, tried in the order of [`ALL`]: the
//! formats recognised by a header field or a sentence of their own first,
//! the general line shapes (Postfix's `<a@b>: ...`, bare address
//! paragraphs) last.
//!
//! A reader only finds: recipients, their remote host, the reply as the
//! remote server wrote it, the command, a status in the bounce's words,
//! and a hint when the format's own fixed words say why. It never decides
//! a reason from the remote server's words (that is [`super::reason`]'s,
//! the same for every format) and never does I/O. Adding a format is a
//! file here with its own tests and a line in [`ALL`].

use super::Format;

pub mod amazonses;
pub mod apachejames;
pub mod dragonfly;
pub mod exchange2003;
pub mod exchange2007;
pub mod exim;
pub mod ezweb;
pub mod fields;
pub mod fml;
pub mod gmail;
pub mod gmx;
pub mod googlegroups;
pub mod imail;
pub mod interscanmss;
pub mod kddi;
pub mod listed;
pub mod mailfoundry;
pub mod mfilter;
pub mod notes;
pub mod opensmtpd;
pub mod paragraphs;
pub mod postfix;
pub mod postfixnotice;
pub mod qmail;
pub mod sendgrid;
pub mod sendmail;
pub mod verizon;
pub mod yahoo;
pub mod zoho;

/// Every format, in the order they are tried.
pub const ALL: &[Format] = &[
    amazonses::FORMAT,
    qmail::FORMAT,
    dragonfly::FORMAT,
    yahoo::FORMAT,
    googlegroups::FORMAT,
    gmail::FORMAT,
    exchange2003::FORMAT,
    exchange2007::FORMAT,
    imail::FORMAT,
    ezweb::FORMAT,
    kddi::FORMAT,
    gmx::FORMAT,
    zoho::FORMAT,
    notes::FORMAT,
    mfilter::FORMAT,
    interscanmss::FORMAT,
    opensmtpd::FORMAT,
    mailfoundry::FORMAT,
    verizon::FORMAT,
    fml::FORMAT,
    postfixnotice::FORMAT,
    apachejames::FORMAT,
    sendgrid::FORMAT,
    sendmail::FORMAT,
    fields::FORMAT,
    listed::FORMAT,
    exim::FORMAT,
    postfix::FORMAT,
    paragraphs::FORMAT,
];
