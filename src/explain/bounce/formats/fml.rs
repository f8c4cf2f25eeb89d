//! fml, the mailing list manager (`X-MLServer: fml`): its notices to the
//! sender name the list and say what went wrong in fml's own words — a
//! mail loop (`Loop Alert: Duplicated Message-ID`), or a post from a
//! non-member.

use super::super::mail::Mail;
use super::super::reason::Reason;
use super::super::text::{address_in, before_marker, find_ci, join, lines};
use super::super::{Format, Found};

/// The fml format.
pub const FORMAT: Format = Format {
    name: "fml",
    detect,
    read,
    generic: false,
};

fn detect(m: &Mail) -> bool {
    m.header("x-mlserver").is_some_and(|x| x.contains("fml"))
}

/// fml's fixed words and what they mean.
const WORDS: &[(&str, Reason)] = &[
    ("Duplicated Message-ID", Reason::SystemError),
    ("Loop Alert", Reason::SystemError),
    ("not a member", Reason::Rejected),
    ("only members", Reason::Rejected),
];

fn read(mail: &Mail) -> Vec<Found> {
    let text = before_marker(&mail.text, &["Original mail as follows"]);
    let said = join(lines(text));
    let Some(list) = address_in(&said) else {
        return Vec::new();
    };
    let mut f = Found::new(list);
    let all = format!("{} {said}", mail.subject());
    f.hint = WORDS
        .iter()
        .find(|(w, _)| find_ci(&all, w).is_some())
        .map(|&(_, r)| r);
    f.diagnostic = Some(said);
    vec![f]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_alert_names_the_list() {
        let m = Mail {
            headers: vec![
                ("subject".into(), "Loop Alert: Duplicated Message-ID (neko ML)".into()),
                ("x-mlserver".into(), "fml [fml 4.0.3 release]".into()),
            ],
            text: "Duplicated Message-ID in <neko@example.co.jp>.\n\nOriginal mail as follows:\n\n   From: x@example.jp\n".into(),
            ..Mail::default()
        };
        let r = read(&m);
        assert_eq!(r[0].recipient, "neko@example.co.jp");
        assert_eq!(r[0].hint, Some(Reason::SystemError));
    }
}
