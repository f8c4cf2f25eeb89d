//! `application/x-www-form-urlencoded` (the WHATWG URL standard's
//! "urlencoded parsing" and serializing): what the explain form posts and
//! what its links carry in the query.
//!
//! Both directions are the `form_urlencoded` crate's. Decoding is bounded
//! by its input (the caller bounds the body); invalid UTF-8 after
//! percent-decoding is replaced, never an error.

/// A form field that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("form field '{field}': {problem}")]
pub struct FormError {
    /// The field's name.
    pub field: String,
    /// What is wrong, for the page.
    pub problem: String,
}

/// The name/value pairs of an urlencoded string, in order: `+` is a space,
/// `%XY` a byte (a `%` not followed by two hex digits stays as it is).
pub fn decode(input: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(input)
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// `s` urlencoded: ASCII letters, digits and `*-._` as they are, space as
/// `+`, every other byte as `%XY`.
pub fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plus_is_a_space_and_percent_escapes_are_bytes() {
        assert_eq!(
            decode(b"text=530+The%20message%0D%0A&command=rcpt&flag"),
            vec![
                ("text".to_string(), "530 The message\r\n".to_string()),
                ("command".to_string(), "rcpt".to_string()),
                ("flag".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn broken_escapes_stay_as_they_are() {
        assert_eq!(
            decode(b"a=100%&b=%zz&c=%4"),
            vec![
                ("a".to_string(), "100%".to_string()),
                ("b".to_string(), "%zz".to_string()),
                ("c".to_string(), "%4".to_string()),
            ]
        );
        assert_eq!(
            decode(b"a=%ff"),
            vec![("a".to_string(), "\u{fffd}".to_string())]
        );
    }

    proptest! {
        #[test]
        fn encoding_then_decoding_gives_the_text_back(name in "[a-z_]{1,8}", value in any::<String>()) {
            let pairs = decode(format!("{}={}", encode(&name), encode(&value)).as_bytes());
            prop_assert_eq!(pairs, vec![(name, value)]);
        }

        #[test]
        fn any_bytes_decode_without_panic(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&input);
        }
    }
}
