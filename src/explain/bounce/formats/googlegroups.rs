//! Google Groups: Gmail's mailer-daemon saying that the group does not
//! exist or refuses posts from this sender (in the sender's language);
//! the group is in `X-Failed-Recipients`. The sender is what is refused.

use super::super::mail::Mail;
use super::super::reason::Reason;
use super::super::text::{address_in, before_marker, join, lines};
use super::super::{Format, Found};

/// The Google Groups format.
pub const FORMAT: Format = Format {
    name: "googlegroups",
    detect,
    read,
    generic: false,
};

fn detect(m: &Mail) -> bool {
    m.from_lower().contains("mailer-daemon@google")
        && (m.text_has("Google Groups") || m.text_has("groups.google.com"))
        && m.header("x-failed-recipients").is_some()
}

fn read(mail: &Mail) -> Vec<Found> {
    let text = before_marker(&mail.text, &["----- Original message -----"]);
    let words = join(lines(text).into_iter().filter(|l| l.is_ascii()));
    mail.header("x-failed-recipients")
        .unwrap_or("")
        .split(',')
        .filter_map(address_in)
        .map(|a| {
            let mut f = Found::new(a);
            f.hint = Some(Reason::Rejected);
            f.note = Some(words.clone());
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_from_x_failed_recipients() {
        let m = Mail {
            headers: vec![
                ("from".into(), "Mail Delivery Subsystem <mailer-daemon@googlemail.com>".into()),
                ("x-failed-recipients".into(), "team@googlegroups.example.com".into()),
            ],
            text: "The group you tried to contact may not exist, or you may not have permission to post.\nGoogle Groups\n".into(),
            ..Mail::default()
        };
        assert!(detect(&m));
        let r = read(&m);
        assert_eq!(r[0].recipient, "team@googlegroups.example.com");
        assert_eq!(r[0].hint, Some(Reason::Rejected));
    }
}
