//! Tests of YAML and type errors: each names its file, line and key.

use super::*;

#[test]
fn unknown_top_level_key_names_file_line_and_key() {
    let d = only_error(&with("mdoe: shadow\n"));
    assert_eq!(d.file, "test.yaml");
    assert_eq!(at(&d), (Some(8), Some(1), "mdoe"));
    assert!(d.message.contains("unknown key 'mdoe'"), "{}", d.message);
    assert_eq!(
        d.to_string().lines().next().unwrap_or(""),
        d.to_string(),
        "one line"
    );
    assert!(
        d.to_string()
            .starts_with("test.yaml:8:1: mdoe: unknown key")
    );
}

#[test]
fn unknown_nested_key_names_its_full_path() {
    let yaml = BASE.replace("upstream: relay", "upstream: relay\n    upsteam: relay");
    let d = only_error(&yaml);
    assert_eq!(at(&d), (Some(5), Some(5), "listeners[0].upsteam"));

    let d = only_error(&with("timeouts:\n  client_idle: 5m\n  drian: 10s\n"));
    assert_eq!(at(&d), (Some(10), Some(3), "timeouts.drian"));

    let d = only_error(&with("admin:\n  listen: 127.0.0.1:9925\n  port: 1\n"));
    assert_eq!(at(&d), (Some(10), Some(3), "admin.port"));
}

#[test]
fn wrong_type_names_line_and_key() {
    let d = only_error(&with("limits:\n  max_sessions: lots\n"));
    assert_eq!(at(&d), (Some(9), Some(17), "limits.max_sessions"));
    assert!(d.message.contains("whole number"), "{}", d.message);

    let d = only_error(&with("limits:\n  max_sessions: -1\n"));
    assert_eq!(d.key, "limits.max_sessions");

    let d = only_error(&with("limits: 5\n"));
    assert_eq!(at(&d), (Some(8), Some(9), "limits"));

    let d = only_error(&with("rules: rules.yaml\n"));
    assert_eq!(d.key, "rules");
    assert_eq!(d.line, Some(8));
}

#[test]
fn yes_is_not_a_boolean() {
    let yaml = BASE.replace(
        "servers: [\"127.0.0.1:25\"]",
        "servers: [\"127.0.0.1:25\"]\n    tls:\n      implicit: yes",
    );
    let d = only_error(&yaml);
    assert_eq!(d.key, "upstreams[0].tls.implicit");
    assert_eq!(d.line, Some(9));
}

#[test]
fn missing_required_key_names_the_key() {
    let d = only_error(
        "listeners:\n  - name: main\n    upstream: relay\nupstreams:\n  - name: relay\n    servers: [\"a:25\"]\n",
    );
    assert_eq!(at(&d), (Some(2), Some(5), "listeners[0].address"));
    assert!(d.message.contains("'address' is missing"), "{}", d.message);
}

#[test]
fn missing_key_is_found_past_nested_mappings() {
    let d = only_error(&BASE.replace(
        "upstream: relay",
        "upstream: relay\n    tls:\n      cert: c.pem",
    ));
    assert_eq!(at(&d), (Some(6), Some(7), "listeners[0].tls.key"));

    let d = only_error(&BASE.replace(
        "    upstream: relay",
        "    tls:\n      cert: c.pem\n      key: k.pem",
    ));
    assert_eq!(at(&d), (Some(2), Some(5), "listeners[0].upstream"));

    let d = only_error(&with("admin: {}\n"));
    assert_eq!(d.key, "admin.listen");
    assert_eq!(d.line, Some(8));
}

#[test]
fn bad_listener_address_names_line_and_key() {
    let d = only_error(&BASE.replace("127.0.0.1:2525", "localhost:2525"));
    assert_eq!(at(&d), (Some(3), Some(14), "listeners[0].address"));
    assert!(d.message.contains("not an IP address"), "{}", d.message);
}

#[test]
fn duplicate_key_is_an_error() {
    let d = only_error(&with("mode: enforce\nmode: shadow\n"));
    assert_eq!(at(&d), (Some(9), Some(1), "mode"));
}

#[test]
fn unknown_key_that_looks_like_a_number_is_named_as_written() {
    for key in ["0x1F", "0o17", "1.5", "+5", "010", "1_000", "1e3", "True"] {
        let d = only_error(&with(&format!("{key}: 1\n")));
        assert_eq!(at(&d), (Some(8), Some(1), key));
        let nested = BASE.replace("upstream: relay", &format!("upstream: relay\n    {key}: x"));
        let d = only_error(&nested);
        assert_eq!(
            at(&d),
            (Some(5), Some(5), format!("listeners[0].{key}").as_str())
        );
    }
}

#[test]
fn integers_beyond_i64_keep_the_line_numbers_of_other_keys() {
    for value in ["9223372036854775808", "18446744073709551615"] {
        let c = load(&with(&format!(
            "limits:\n  max_message_size: {value}\nmode: shadow\n"
        )))
        .unwrap();
        assert_eq!(c.limits.max_message_size, value.parse().ok());
        let warnings: Vec<_> = c.warnings.iter().map(at).collect();
        assert_eq!(warnings, [(Some(10), Some(7), "mode")]);
    }
}

#[test]
fn syntax_error_has_a_line() {
    let d = only_error(&with("limits: [\n"));
    assert!(d.line.is_some(), "{d:?}");
}

#[test]
fn top_level_list_is_an_error() {
    let d = only_error("- a\n- b\n");
    assert_eq!(d.line, Some(1));
}
