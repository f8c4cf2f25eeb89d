//! Exchange 2007 and later and Office 365 NDRs: `Remote Server returned
//! '550 5.1.1 ...'` after the recipient's address, in the text or (when
//! there is no plain text) the HTML; newer ones `Remote server returned
//! ... ` blocks under "Diagnostic information for administrators"; 2007
//! and 2010 the reply between `#` and `##` under the address
//! (`#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##`).

use std::sync::LazyLock;

use regex::Regex;

use super::super::mail::Mail;
use super::super::text::{address_in, lines};
use super::super::{Format, Found};

/// The Exchange 2007+ format.
pub const FORMAT: Format = Format {
    name: "exchange2007",
    detect,
    read,
    generic: false,
};

static RETURNED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)Remote Server returned '([^']*)'?").expect("static regex"));
static HASHED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*#(\d{3}[ -]\d\.\d{1,3}\.\d{1,3}\s.*?)\s*##.*$").expect("static regex")
});
static ORG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:organization rejected your message|Remote server|Generating server):?\s*\[?([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
        .expect("static regex")
});

fn detect(m: &Mail) -> bool {
    m.text_has("Remote Server returned")
        || m.text_has("Diagnostic information for administrators")
        || m.header("x-ms-exchange-message-is-ndr").is_some()
}

fn read(mail: &Mail) -> Vec<Found> {
    let mut out = Vec::new();
    let mut last_address: Option<String> = None;
    let mut org: Option<String> = None;
    for line in lines(&mail.text) {
        if let Some(c) = ORG.captures(line) {
            org = Some(c[1].trim_end_matches('.').to_string());
        }
        // Exchange 2007/2010 write the reply between `#` and `##`.
        if let Some(c) = RETURNED.captures(line).or_else(|| HASHED.captures(line)) {
            if let Some(a) = last_address.clone() {
                let mut f = Found::new(a);
                f.diagnostic = Some(c[1].trim().to_string());
                out.push(f);
            }
            continue;
        }
        if let Some(a) = address_in(line)
            && line.trim().len() <= a.len() + 4
        {
            last_address = Some(a);
        }
    }
    for f in &mut out {
        f.remote_mta.clone_from(&org);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_reply_follows_the_address() {
        let m = Mail::with_text(
            "Diagnostic information for administrators:\n\nGenerating server: mx.example.org\n\nkim@example.co.jp\n#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 5.1.1 RESOLVER.ADR.RecipNotFound; not found")
        );
    }

    #[test]
    fn reply_follows_the_address() {
        let m = Mail::with_text(
            "Delivery has failed to these recipients or groups:\n\nhal@example.org\nThe e-mail address you entered couldn't be found.\n\nDiagnostic information for administrators:\n\nGenerating server: mx.example.org\n\nhal@example.org\nRemote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'\n",
        );
        let r = read(&m);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].recipient, "hal@example.org");
        assert_eq!(r[0].remote_mta.as_deref(), Some("mx.example.org"));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 5.1.1 RESOLVER.ADR.RecipNotFound; not found")
        );
    }
}
