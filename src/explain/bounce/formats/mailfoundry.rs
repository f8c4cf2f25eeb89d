//! MailFoundry: "Unable to deliver message to: <a@b>", "Delivery failed
//! for the following reason:" and `Server H[ip] failed with: REPLY`.

use std::sync::LazyLock;

use regex::Regex;

use super::super::mail::Mail;
use super::super::text::{join, lines};
use super::super::{Format, Found};

/// The MailFoundry format.
pub const FORMAT: Format = Format {
    name: "mailfoundry",
    detect,
    read,
    generic: false,
};

static TO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^Unable to deliver message to:\s*<?([^\s<>]+@[^\s<>]+?)>?\s*$")
        .expect("static regex")
});
static SERVER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^Server\s+(\S+?)(?:\[[^\]]*\])?\s+failed with:\s*(.*)$").expect("static regex")
});

fn detect(m: &Mail) -> bool {
    m.text_has("Delivery failed for the following reason:")
}

fn read(mail: &Mail) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    let mut why: Vec<&str> = Vec::new();
    for line in lines(&mail.text) {
        let t = line.trim();
        if let Some(c) = TO.captures(t) {
            out.push(Found::new(&c[1]));
        } else if let Some(c) = SERVER.captures(t)
            && let Some(f) = out.last_mut()
        {
            f.remote_mta = Some(c[1].to_string());
            f.diagnostic = Some(c[2].trim().to_string());
        } else if !out.is_empty() && !t.is_empty() && !t.ends_with("following reason:") {
            why.push(t);
        }
    }
    for f in &mut out {
        f.note = Some(join(why.iter().copied()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_failed_with_reply() {
        let m = Mail::with_text(
            "Unable to deliver message to: <kim@example.org>\nDelivery failed for the following reason:\nServer mx.example.org[192.0.2.2] failed with: 550 <kim@example.org> No such user here\n\nThis has been a permanent failure.\n",
        );
        let r = read(&m);
        assert_eq!(r[0].remote_mta.as_deref(), Some("mx.example.org"));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 <kim@example.org> No such user here")
        );
    }
}
