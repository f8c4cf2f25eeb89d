//! Client commands: the verb and the few arguments replyfix acts on.
//!
//! [`classify`] reads one command line (without judging it) and says what
//! kind of command it is; the kind becomes the rule context of the reply that
//! answers it (docs/protocol.md P1). Arguments are bytes (P5); only the ones the
//! relay needs are parsed (the BDAT count, the AUTH mechanism and whether it
//! carries an initial response).

use std::fmt;
use std::str::FromStr;

/// The command a reply answers: the rule context (P1). `Greeting` and
/// `DataEnd` are not client verbs but the two replies that answer no command
/// line (the connection itself, and the end of message content).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommandKind {
    Greeting,
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    DataEnd,
    Bdat,
    Auth,
    Starttls,
    Rset,
    Vrfy,
    Noop,
    Quit,
    Other,
}

impl CommandKind {
    /// Every context, in a stable order (for help texts and metrics).
    pub const ALL: [CommandKind; 15] = [
        CommandKind::Greeting,
        CommandKind::Ehlo,
        CommandKind::Helo,
        CommandKind::Mail,
        CommandKind::Rcpt,
        CommandKind::Data,
        CommandKind::DataEnd,
        CommandKind::Bdat,
        CommandKind::Auth,
        CommandKind::Starttls,
        CommandKind::Rset,
        CommandKind::Vrfy,
        CommandKind::Noop,
        CommandKind::Quit,
        CommandKind::Other,
    ];

    /// The name used in rules, logs and metrics (`data_end`, `rcpt`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            CommandKind::Greeting => "greeting",
            CommandKind::Ehlo => "ehlo",
            CommandKind::Helo => "helo",
            CommandKind::Mail => "mail",
            CommandKind::Rcpt => "rcpt",
            CommandKind::Data => "data",
            CommandKind::DataEnd => "data_end",
            CommandKind::Bdat => "bdat",
            CommandKind::Auth => "auth",
            CommandKind::Starttls => "starttls",
            CommandKind::Rset => "rset",
            CommandKind::Vrfy => "vrfy",
            CommandKind::Noop => "noop",
            CommandKind::Quit => "quit",
            CommandKind::Other => "other",
        }
    }

    /// A bit for this kind, for compact sets of contexts.
    pub const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown context name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown command context '{0}' (expected one of: greeting, ehlo, helo, mail, rcpt, data, data_end, bdat, auth, starttls, rset, vrfy, noop, quit, other)"
)]
pub struct UnknownCommandKind(pub String);

impl FromStr for CommandKind {
    type Err = UnknownCommandKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CommandKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownCommandKind(s.to_string()))
    }
}

/// A classified command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    /// `BDAT n [LAST]` with a valid count (D5).
    Bdat {
        size: u64,
        last: bool,
    },
    /// `BDAT` whose arguments are not `count [LAST]` (D5: 521 and close).
    BdatMalformed,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        mechanism: &'a [u8],
        initial_response: bool,
    },
    Starttls,
    Rset,
    Vrfy,
    Noop,
    Quit,
    /// An HTTP request line sent to an SMTP port (R4).
    Http,
    Other,
}

impl Command<'_> {
    /// The rule context of the reply to this command.
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Ehlo => CommandKind::Ehlo,
            Command::Helo => CommandKind::Helo,
            Command::Mail => CommandKind::Mail,
            Command::Rcpt => CommandKind::Rcpt,
            Command::Data => CommandKind::Data,
            Command::Bdat { .. } | Command::BdatMalformed => CommandKind::Bdat,
            Command::Auth { .. } => CommandKind::Auth,
            Command::Starttls => CommandKind::Starttls,
            Command::Rset => CommandKind::Rset,
            Command::Vrfy => CommandKind::Vrfy,
            Command::Noop => CommandKind::Noop,
            Command::Quit => CommandKind::Quit,
            Command::Http | Command::Other => CommandKind::Other,
        }
    }
}

/// Classifies one command line (`line` without its line ending).
pub fn classify(line: &[u8]) -> Command<'_> {
    let (verb, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &line[line.len()..]),
    };
    let is = |v: &[u8]| verb.eq_ignore_ascii_case(v);
    // MAIL FROM: and RCPT TO: are two-word verbs; the first word decides.
    if is(b"EHLO") {
        Command::Ehlo
    } else if is(b"HELO") {
        Command::Helo
    } else if is(b"MAIL") {
        Command::Mail
    } else if is(b"RCPT") {
        Command::Rcpt
    } else if is(b"DATA") {
        Command::Data
    } else if is(b"BDAT") {
        parse_bdat(rest)
    } else if is(b"AUTH") {
        let mut words = rest.split(|&b| b == b' ').filter(|w| !w.is_empty());
        let mechanism = words.next().unwrap_or(b"");
        Command::Auth {
            mechanism,
            initial_response: words.next().is_some(),
        }
    } else if is(b"STARTTLS") {
        Command::Starttls
    } else if is(b"RSET") {
        Command::Rset
    } else if is(b"VRFY") {
        Command::Vrfy
    } else if is(b"NOOP") {
        Command::Noop
    } else if is(b"QUIT") {
        Command::Quit
    } else if [
        &b"GET"[..],
        b"POST",
        b"HEAD",
        b"PUT",
        b"CONNECT",
        b"OPTIONS",
        b"DELETE",
    ]
    .contains(&verb)
    {
        // HTTP methods are case-sensitive; an SMTP client never sends these.
        Command::Http
    } else {
        Command::Other
    }
}

/// `BDAT` arguments: `chunk-size [SP "LAST"]` (RFC 3030), digits only, no
/// overflow, nothing else (D5).
fn parse_bdat(args: &[u8]) -> Command<'_> {
    let mut words = args.split(|&b| b == b' ');
    let Some(count) = words.next() else {
        return Command::BdatMalformed;
    };
    if count.is_empty() || count.len() > 19 || !count.iter().all(u8::is_ascii_digit) {
        return Command::BdatMalformed;
    }
    let size = count
        .iter()
        .fold(0u64, |acc, b| acc * 10 + (b - b'0') as u64);
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case(b"LAST") => true,
        Some(_) => return Command::BdatMalformed,
    };
    if words.next().is_some() {
        return Command::BdatMalformed;
    }
    Command::Bdat { size, last }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(classify(b"ehlo client.example").kind(), CommandKind::Ehlo);
        assert_eq!(classify(b"Mail FROM:<a@b>").kind(), CommandKind::Mail);
        assert_eq!(classify(b"rcpt to:<a@b>").kind(), CommandKind::Rcpt);
        assert_eq!(classify(b"DATA").kind(), CommandKind::Data);
        assert_eq!(classify(b"quit").kind(), CommandKind::Quit);
        assert_eq!(classify(b"XFOO").kind(), CommandKind::Other);
        assert_eq!(classify(b"").kind(), CommandKind::Other);
    }

    #[test]
    fn bdat_count_and_last_are_parsed() {
        assert_eq!(
            classify(b"BDAT 1000"),
            Command::Bdat {
                size: 1000,
                last: false
            }
        );
        assert_eq!(
            classify(b"bdat 0 last"),
            Command::Bdat {
                size: 0,
                last: true
            }
        );
    }

    #[test]
    fn malformed_bdat_counts_are_rejected_d5() {
        for line in [
            &b"BDAT"[..],
            b"BDAT x",
            b"BDAT -1",
            b"BDAT 12 LAST extra",
            b"BDAT 12 FIRST",
            b"BDAT 99999999999999999999",
            b"BDAT  12",
            b"BDAT +5",
        ] {
            assert_eq!(classify(line), Command::BdatMalformed, "{line:?}");
        }
    }

    #[test]
    fn auth_mechanism_and_initial_response() {
        assert_eq!(
            classify(b"AUTH PLAIN AGEAYg=="),
            Command::Auth {
                mechanism: b"PLAIN",
                initial_response: true
            }
        );
        assert_eq!(
            classify(b"AUTH LOGIN"),
            Command::Auth {
                mechanism: b"LOGIN",
                initial_response: false
            }
        );
    }

    #[test]
    fn http_request_lines_are_recognised_r4() {
        assert_eq!(classify(b"GET / HTTP/1.1"), Command::Http);
        assert_eq!(classify(b"POST /x HTTP/1.0"), Command::Http);
    }

    #[test]
    fn kind_names_round_trip() {
        for k in CommandKind::ALL {
            assert_eq!(k.as_str().parse::<CommandKind>().unwrap(), k);
        }
        assert!("bogus".parse::<CommandKind>().is_err());
    }
}
