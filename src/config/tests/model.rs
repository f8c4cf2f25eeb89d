//! Tests of the model: defaults, enum spellings and durations.

use super::*;

#[test]
fn minimal_config_gets_every_default() {
    let config = load(BASE).expect("loads");
    assert_eq!(config.mode, Mode::Enforce);
    assert_eq!(config.bare_line_endings, BareLineEndings::Reject);
    assert!(config.rules.is_empty());
    assert!(config.admin.is_none());
    assert!(!config.hostname.is_empty());
    assert_eq!(config.source, Some(PathBuf::from("test.yaml")));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);

    let l = &config.limits;
    assert_eq!(l.max_sessions, 1000);
    assert_eq!(l.max_sessions_per_client, 50);
    assert_eq!(l.max_command_line, 2048);
    assert_eq!(l.max_reply_line, 2048);
    assert_eq!(l.max_reply, 65536);
    assert_eq!(l.max_pipeline, 100);
    assert_eq!(l.max_sasl_line, 12288);
    assert_eq!(l.max_errors, 20);
    assert_eq!(l.max_message_size, None);
    assert_eq!(l.max_tls_handshakes, 100);
    assert_eq!(l.min_data_rate, 1024);
    assert_eq!(l.max_session_lifetime, Duration::from_secs(3600));

    let t = &config.timeouts;
    assert_eq!(t.upstream_connect, Duration::from_secs(30));
    assert_eq!(t.upstream_reply, Duration::from_secs(240));
    assert_eq!(t.data_end_reply, Duration::from_secs(540));
    assert_eq!(t.client_idle, Duration::from_secs(300));
    assert_eq!(t.command, Duration::from_secs(300));
    assert_eq!(t.tls_handshake, Duration::from_secs(30));
    assert_eq!(t.drain, Duration::from_secs(30));

    assert_eq!(config.logging.format, LogFormat::Auto);
    assert_eq!(config.logging.level, "info");
    assert_eq!(config.logging.log_addresses, LogAddresses::Domain);
    assert_eq!(config.logging.hash_key, None);

    let listener = &config.listeners[0];
    assert!(listener.tls.is_none());
    assert!(listener.proxy_protocol.is_none());
    assert!(listener.trusted_proxies.is_empty());
    let upstream = config.upstream_for(listener).expect("upstream");
    assert_eq!(upstream.tls.policy, TlsPolicy::None);
    assert!(!upstream.tls.implicit);
    assert_eq!(upstream.send_client_address, ClientAddressForwarding::None);
    assert_eq!(upstream.helo_name, None);
}

#[test]
fn auto_log_format_is_text_on_a_terminal_and_json_otherwise() {
    assert_eq!(LogFormat::Auto.resolve(true), LogFormat::Text);
    assert_eq!(LogFormat::Auto.resolve(false), LogFormat::Json);
    assert_eq!(LogFormat::Json.resolve(true), LogFormat::Json);
    assert_eq!(LogFormat::Text.resolve(false), LogFormat::Text);
}

#[test]
fn hash_key_is_not_shown_by_debug() {
    let logging = Logging {
        hash_key: Some("very-secret-value".to_owned()),
        ..Logging::default()
    };
    assert!(!format!("{logging:?}").contains("very-secret-value"));
}

#[test]
fn every_enum_spelling_is_accepted() {
    for (text, mode) in [("enforce", Mode::Enforce), ("shadow", Mode::Shadow)] {
        assert_eq!(load(&with(&format!("mode: {text}\n"))).unwrap().mode, mode);
    }
    for (text, want) in [
        ("reject", BareLineEndings::Reject),
        ("sanitize", BareLineEndings::Sanitize),
    ] {
        let c = load(&with(&format!("bare_line_endings: {text}\n"))).unwrap();
        assert_eq!(c.bare_line_endings, want);
    }
    for (text, want) in [
        ("auto", LogFormat::Auto),
        ("text", LogFormat::Text),
        ("json", LogFormat::Json),
    ] {
        let c = load(&with(&format!("logging:\n  format: {text}\n"))).unwrap();
        assert_eq!(c.logging.format, want);
    }
    for (text, want) in [
        ("full", LogAddresses::Full),
        ("domain", LogAddresses::Domain),
        ("hash", LogAddresses::Hash),
    ] {
        let c = load(&with(&format!(
            "logging:\n  log_addresses: {text}\n  hash_key: 0123456789abcdef0123\n"
        )))
        .unwrap();
        assert_eq!(c.logging.log_addresses, want);
    }
    for (text, want) in [
        ("none", TlsPolicy::None),
        ("may", TlsPolicy::May),
        ("encrypt", TlsPolicy::Encrypt),
        ("verify", TlsPolicy::Verify),
    ] {
        let yaml = BASE.replace(
            "servers: [\"127.0.0.1:25\"]",
            &format!("servers: [\"127.0.0.1:25\"]\n    tls:\n      policy: {text}"),
        );
        assert_eq!(load(&yaml).unwrap().upstreams[0].tls.policy, want);
    }
    for (text, want) in [
        ("none", ClientAddressForwarding::None),
        ("proxy-v1", ClientAddressForwarding::ProxyV1),
        ("proxy-v2", ClientAddressForwarding::ProxyV2),
        ("xclient", ClientAddressForwarding::Xclient),
    ] {
        let yaml = BASE.replace(
            "servers: [\"127.0.0.1:25\"]",
            &format!("servers: [\"127.0.0.1:25\"]\n    send_client_address: {text}"),
        );
        assert_eq!(load(&yaml).unwrap().upstreams[0].send_client_address, want);
    }
    for (text, want) in [
        ("v1", ProxyProtocol::V1),
        ("v2", ProxyProtocol::V2),
        ("any", ProxyProtocol::Any),
    ] {
        let yaml = BASE.replace(
            "upstream: relay",
            &format!(
                "upstream: relay\n    proxy_protocol: {text}\n    trusted_proxies: [10.0.0.0/8]"
            ),
        );
        assert_eq!(load(&yaml).unwrap().listeners[0].proxy_protocol, Some(want));
    }
}

#[test]
fn misspelled_enum_value_names_line_key_and_choices() {
    let d = only_error(&with("mode: enforcing\n"));
    assert_eq!(at(&d), (Some(8), Some(7), "mode"));
    assert!(d.message.contains("enforce, shadow"), "{}", d.message);
}

#[test]
fn durations_take_units_and_plain_seconds() {
    let ok = [
        ("30s", 30_000),
        ("5m", 300_000),
        ("1h", 3_600_000),
        ("1h30m", 5_400_000),
        ("500ms", 500),
        ("2d", 172_800_000),
        ("45", 45_000),
        (" 10s ", 10_000),
    ];
    for (text, ms) in ok {
        assert_eq!(
            parse_duration(text),
            Ok(Duration::from_millis(ms)),
            "{text}"
        );
    }
    for bad in ["", "s", "10x", "1.5s", "-1s", "10 s", "5 minutes", "m5"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
    assert!(parse_duration("99999999999999999999999s").is_err());
    assert!(parse_duration("999999999999999999d").is_err());
}

#[test]
fn durations_in_yaml_accept_strings_and_integers() {
    let c = load(&with("timeouts:\n  client_idle: 5m\n  drain: 45\n")).unwrap();
    assert_eq!(c.timeouts.client_idle, Duration::from_secs(300));
    assert_eq!(c.timeouts.drain, Duration::from_secs(45));
}

#[test]
fn bad_duration_names_line_key_and_units() {
    let d = only_error(&with("timeouts:\n  client_idle: 5 minutes\n"));
    assert_eq!(at(&d), (Some(9), Some(16), "timeouts.client_idle"));
    assert!(d.message.contains("units"), "{}", d.message);
    let d = only_error(&with("timeouts:\n  drain: -5\n"));
    assert_eq!(d.key, "timeouts.drain");
}
