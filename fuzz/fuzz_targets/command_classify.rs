//! The command classifier (P1, D5, R4): never panics on any bytes (P5) and
//! agrees with a reference classifier written here by direct definition.
#![no_main]

use libfuzzer_sys::fuzz_target;
use replyfix::smtp::command::{Command, classify};

fuzz_target!(|line: &[u8]| {
    let got = classify(line);
    let want = reference(line);
    assert_eq!(got, want, "classify({:?})", String::from_utf8_lossy(line));
    // The kind (the rule context) follows from the command alone.
    let _ = got.kind().as_str();
    if let Command::Auth { mechanism, .. } = got {
        // The mechanism is a slice of the line, never invented.
        assert!(
            line.windows(mechanism.len().max(1)).any(|w| w == mechanism) || mechanism.is_empty()
        );
    }
});

fn reference(line: &[u8]) -> Command<'_> {
    let (verb, rest) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &b""[..]),
    };
    let upper = verb.to_ascii_uppercase();
    match &upper[..] {
        b"EHLO" => Command::Ehlo,
        b"HELO" => Command::Helo,
        b"MAIL" => Command::Mail,
        b"RCPT" => Command::Rcpt,
        b"DATA" => Command::Data,
        b"STARTTLS" => Command::Starttls,
        b"RSET" => Command::Rset,
        b"VRFY" => Command::Vrfy,
        b"NOOP" => Command::Noop,
        b"QUIT" => Command::Quit,
        b"AUTH" => {
            let words: Vec<&[u8]> = rest
                .split(|&b| b == b' ')
                .filter(|w| !w.is_empty())
                .collect();
            Command::Auth {
                mechanism: words.first().copied().unwrap_or(b""),
                initial_response: words.len() > 1,
            }
        }
        b"BDAT" => {
            // RFC 3030: chunk-size [SP "LAST"]; D5: digits only, at most 19
            // of them (always fits u64), single spaces, nothing else.
            let words: Vec<&[u8]> = rest.split(|&b| b == b' ').collect();
            let count = words[0];
            let size = std::str::from_utf8(count)
                .ok()
                .filter(|c| !c.is_empty() && c.len() <= 19 && c.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|c| c.parse::<u64>().ok());
            match (size, &words[1..]) {
                (Some(size), []) => Command::Bdat { size, last: false },
                (Some(size), [w]) if w.eq_ignore_ascii_case(b"LAST") => {
                    Command::Bdat { size, last: true }
                }
                _ => Command::BdatMalformed,
            }
        }
        _ if [
            &b"GET"[..],
            b"POST",
            b"HEAD",
            b"PUT",
            b"CONNECT",
            b"OPTIONS",
            b"DELETE",
        ]
        .contains(&verb) =>
        {
            Command::Http
        }
        _ => Command::Other,
    }
}
