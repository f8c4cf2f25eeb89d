//! Tests of the configuration: defaults, enum spellings, YAML and semantic
//! errors with their file:line:key, warnings, durations, `quick`, and the
//! shipped example files.

use std::time::Duration;

use super::*;

const BASE: &str = "\
listeners:
  - name: main
    address: 127.0.0.1:2525
    upstream: relay
upstreams:
  - name: relay
    servers: [\"127.0.0.1:25\"]
";

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml("test.yaml", text)
}

fn errors(text: &str) -> Vec<ConfigDiagnostic> {
    match load(text) {
        Ok(config) => panic!("expected errors, got {config:?}"),
        Err(e) => e.0,
    }
}

fn only_error(text: &str) -> ConfigDiagnostic {
    let mut errors = errors(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors.remove(0)
}

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

fn at(d: &ConfigDiagnostic) -> (Option<usize>, Option<usize>, &str) {
    (d.line, d.column, d.key.as_str())
}

// --- defaults -------------------------------------------------------

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

// --- enum spellings -------------------------------------------------

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

// --- structural errors ------------------------------------------------

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

// --- semantic errors ----------------------------------------------------

#[test]
fn empty_document_needs_listeners_and_upstreams() {
    let errors = errors("");
    let keys: Vec<_> = errors.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, ["upstreams", "listeners"]);
    assert!(errors.iter().all(|d| d.line.is_none()));
    assert!(
        errors[0]
            .to_string()
            .starts_with("test.yaml: upstreams: no upstream")
    );
}

#[test]
fn listener_naming_unknown_upstream_lists_the_defined_ones() {
    let yaml = "\
listeners:
  - name: main
    address: 127.0.0.1:2525
    upstream: relay
upstreams:
  - name: main
    servers: [\"a.example:25\"]
  - name: backup
    servers: [\"b.example:25\"]
";
    let d = only_error(yaml);
    assert_eq!(at(&d), (Some(4), Some(15), "listeners[0].upstream"));
    assert_eq!(
        d.to_string(),
        "test.yaml:4:15: listeners[0].upstream: no upstream named 'relay' (defined: main, backup)"
    );
}

#[test]
fn duplicate_names_and_addresses_are_errors() {
    let yaml = "\
listeners:
  - name: a
    address: 127.0.0.1:2525
    upstream: u
  - name: a
    address: 127.0.0.1:2525
    upstream: u
upstreams:
  - name: u
    servers: [\"h:25\"]
  - name: u
    servers: [\"h:26\"]
";
    let errors = errors(yaml);
    let found: Vec<_> = errors.iter().map(at).collect();
    assert_eq!(
        found,
        [
            (Some(5), Some(11), "listeners[1].name"),
            (Some(6), Some(14), "listeners[1].address"),
            (Some(11), Some(11), "upstreams[1].name"),
        ]
    );
}

#[test]
fn server_strings_must_be_host_and_port() {
    let yaml = BASE.replace(
            "servers: [\"127.0.0.1:25\"]",
            "servers:\n      - mail.example.com\n      - \"2001:db8::1:25\"\n      - h:0\n      - h:99999\n      - \"[::1]:25\"\n      - \"[nope]:25\"\n      - bad_name:25\n      - ok.example:587",
        );
    let errors = errors(&yaml);
    let keys: Vec<_> = errors.iter().map(|d| (d.line, d.key.as_str())).collect();
    assert_eq!(
        keys,
        [
            (Some(8), "upstreams[0].servers[0]"),
            (Some(9), "upstreams[0].servers[1]"),
            (Some(10), "upstreams[0].servers[2]"),
            (Some(11), "upstreams[0].servers[3]"),
            (Some(13), "upstreams[0].servers[5]"),
            (Some(14), "upstreams[0].servers[6]"),
        ]
    );
    assert!(errors[0].message.contains("no port"));
    assert!(errors[1].message.contains("brackets"));
}

#[test]
fn upstream_without_servers_is_an_error() {
    let d = only_error(&BASE.replace("[\"127.0.0.1:25\"]", "[]"));
    assert_eq!(at(&d), (Some(7), Some(14), "upstreams[0].servers"));
}

#[test]
fn proxy_protocol_without_trusted_proxies_is_an_error() {
    let d = only_error(&BASE.replace("upstream: relay", "upstream: relay\n    proxy_protocol: v1"));
    assert_eq!(at(&d), (Some(5), Some(21), "listeners[0].proxy_protocol"));
    assert!(d.message.contains("any client"), "{}", d.message);
}

#[test]
fn trusted_proxies_accept_networks_and_single_addresses() {
    let c = load(&BASE.replace(
            "upstream: relay",
            "upstream: relay\n    proxy_protocol: any\n    trusted_proxies: [10.0.0.0/8, 192.0.2.7, \"2001:db8::/32\", \"::1\"]",
        ))
        .unwrap();
    let nets: Vec<String> = c.listeners[0]
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        nets,
        ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "::1/128"]
    );

    let d = only_error(&BASE.replace(
        "upstream: relay",
        "upstream: relay\n    proxy_protocol: any\n    trusted_proxies: [10.0.0.0/8, lb.example]",
    ));
    assert_eq!(
        at(&d),
        (Some(6), Some(35), "listeners[0].trusted_proxies[1]")
    );
}

#[test]
fn zero_limits_and_timeouts_are_errors() {
    let errors = errors(&with(
        "limits:\n  max_sessions: 0\n  max_pipeline: 0\n  max_errors: 0\n  max_message_size: 0\n  max_session_lifetime: 0s\ntimeouts:\n  upstream_reply: 0\n  drain: 0s\n",
    ));
    let keys: Vec<_> = errors.iter().map(|d| (d.line, d.key.as_str())).collect();
    assert_eq!(
        keys,
        [
            (Some(9), "limits.max_sessions"),
            (Some(10), "limits.max_pipeline"),
            (Some(11), "limits.max_errors"),
            (Some(12), "limits.max_message_size"),
            (Some(13), "limits.max_session_lifetime"),
            (Some(15), "timeouts.upstream_reply"),
            (Some(16), "timeouts.drain"),
        ]
    );
}

#[test]
fn min_data_rate_zero_disables_the_check() {
    let c = load(&with("limits:\n  min_data_rate: 0\n")).unwrap();
    assert_eq!(c.limits.min_data_rate, 0);
}

#[test]
fn reply_line_longer_than_reply_is_an_error() {
    let d = only_error(&with("limits:\n  max_reply: 1000\n"));
    assert_eq!(at(&d), (Some(9), Some(14), "limits.max_reply"));
    let d = only_error(&with(
        "limits:\n  max_reply: 4096\n  max_reply_line: 8192\n",
    ));
    assert_eq!(d.key, "limits.max_reply_line");
    assert_eq!(d.line, Some(10));
}

#[test]
fn upstream_ca_must_exist_but_verify_without_ca_is_fine() {
    let verify = BASE.replace(
        "servers: [\"127.0.0.1:25\"]",
        "servers: [\"127.0.0.1:25\"]\n    tls:\n      policy: verify",
    );
    assert!(load(&verify).is_ok());
    let d = only_error(&format!("{verify}      ca: no-such-ca.pem\n"));
    assert_eq!(at(&d), (Some(10), Some(11), "upstreams[0].tls.ca"));
    assert!(d.message.contains("no-such-ca.pem"));
}

#[test]
fn implicit_upstream_tls_needs_a_policy_that_encrypts() {
    let yaml = BASE.replace(
        "servers: [\"127.0.0.1:25\"]",
        "servers: [\"127.0.0.1:465\"]\n    tls:\n      implicit: true",
    );
    assert_eq!(only_error(&yaml).key, "upstreams[0].tls.implicit");
}

#[test]
fn listener_tls_files_must_exist_and_each_is_named() {
    let yaml = BASE.replace(
        "upstream: relay",
        "upstream: relay\n    tls:\n      cert: missing-cert.pem\n      key: missing-key.pem",
    );
    let errors = errors(&yaml);
    let found: Vec<_> = errors.iter().map(at).collect();
    assert_eq!(
        found,
        [
            (Some(6), Some(13), "listeners[0].tls.cert"),
            (Some(7), Some(12), "listeners[0].tls.key"),
        ]
    );
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let dir = std::env::temp_dir().join(format!("replyfix-config-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::write(dir.join("certs/c.pem"), "x").unwrap();
    std::fs::write(dir.join("certs/k.pem"), "x").unwrap();
    std::fs::write(dir.join("local.yaml"), "x").unwrap();
    let yaml = BASE.replace(
        "upstream: relay",
        "upstream: relay\n    tls:\n      cert: certs/c.pem\n      key: certs/k.pem",
    ) + "rules: [local.yaml]\n";
    let file = dir.join("replyfix.yaml");
    std::fs::write(&file, yaml).unwrap();
    let c = Config::load(&file).unwrap();
    let tls = c.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.cert, dir.join("certs/c.pem"));
    assert_eq!(tls.key, dir.join("certs/k.pem"));
    assert_eq!(c.rules, [dir.join("local.yaml")]);
    assert_eq!(c.source, Some(file));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_rules_path_is_an_error() {
    let d = only_error(&with("rules:\n  - no-such-rules.yaml\n"));
    assert_eq!(at(&d), (Some(9), Some(5), "rules[0]"));
}

#[test]
fn hash_addresses_without_hash_key_is_an_error() {
    let d = only_error(&with("logging:\n  log_addresses: hash\n"));
    assert_eq!(at(&d), (Some(9), Some(18), "logging.log_addresses"));
    assert!(d.message.contains("hash_key"));
}

#[test]
fn log_level_must_be_a_level_or_directives() {
    for good in [
        "info",
        "DEBUG",
        "off",
        "warn,replyfix::rules=debug",
        "replyfix=trace",
    ] {
        let c = load(&with(&format!("logging:\n  level: \"{good}\"\n")));
        assert!(c.is_ok(), "{good}: {c:?}");
    }
    for bad in ["inf", "", "info,replyfix=loud"] {
        let d = only_error(&with(&format!("logging:\n  level: \"{bad}\"\n")));
        assert_eq!(d.key, "logging.level", "{bad}");
        assert_eq!(d.line, Some(9), "{bad}");
    }
}

#[test]
fn hostname_must_be_a_domain() {
    let d = only_error(&with("hostname: \"mx.example.com\\r\\n250 OK\"\n"));
    assert_eq!(at(&d), (Some(8), Some(11), "hostname"));
    assert!(load(&with("hostname: mx.example.com\n")).is_ok());
    assert!(load(&with("hostname: \"[192.0.2.1]\"\n")).is_ok());
}

#[test]
fn admin_must_not_share_a_listener_address() {
    let d = only_error(&with("admin:\n  listen: 127.0.0.1:2525\n"));
    assert_eq!(at(&d), (Some(9), Some(11), "admin.listen"));
}

#[test]
fn several_errors_are_reported_together_in_file_order() {
    let yaml = "\
listeners:
  - name: main
    address: 127.0.0.1:2525
    upstream: nowhere
    proxy_protocol: v2
upstreams:
  - name: relay
    servers: [\"relay.example\"]
limits:
  max_sessions: 0
timeouts:
  command: 0s
";
    let err = load(yaml).unwrap_err();
    let keys: Vec<_> = err.0.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "listeners[0].upstream",
            "listeners[0].proxy_protocol",
            "upstreams[0].servers[0]",
            "limits.max_sessions",
            "timeouts.command",
        ]
    );
    let text = err.to_string();
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.lines().all(|l| l.starts_with("test.yaml:")), "{text}");
}

// --- warnings -----------------------------------------------------------

#[test]
fn sanitize_and_shadow_load_with_warnings() {
    let c = load(&with("bare_line_endings: sanitize\nmode: shadow\n")).unwrap();
    let keys: Vec<_> = c
        .warnings
        .iter()
        .map(|d| (d.line, d.key.as_str()))
        .collect();
    assert_eq!(keys, [(Some(9), "mode"), (Some(8), "bare_line_endings")]);
}

#[test]
fn unused_upstream_is_a_warning() {
    let c = load(&with("  - name: spare\n    servers: [\"127.0.0.2:25\"]\n")).unwrap();
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(c.warnings[0].key, "upstreams[1].name");
}

// --- durations ------------------------------------------------------------

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

// --- quick() and IPv6 -----------------------------------------------------

#[test]
fn quick_builds_one_default_upstream_and_named_listeners() {
    let one = Config::quick(
        vec!["127.0.0.1:2525".parse().unwrap()],
        vec!["mail.example.com:25".to_owned(), "[::1]:25".to_owned()],
    )
    .unwrap();
    assert_eq!(one.listeners.len(), 1);
    assert_eq!(one.listeners[0].name, "default");
    assert_eq!(one.listeners[0].upstream, "default");
    assert_eq!(one.upstreams[0].name, "default");
    assert_eq!(one.upstreams[0].servers.len(), 2);
    assert_eq!(one.limits, Limits::default());
    assert_eq!(one.source, None);

    let two = Config::quick(
        vec![
            "127.0.0.1:2525".parse().unwrap(),
            "[::1]:2525".parse().unwrap(),
        ],
        vec!["mail.example.com:25".to_owned()],
    )
    .unwrap();
    let names: Vec<_> = two.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["listener-1", "listener-2"]);
}

#[test]
fn quick_start_and_a_file_without_tls_share_one_upstream_policy() {
    let quick = Config::quick(
        vec!["127.0.0.1:2525".parse().unwrap()],
        vec!["127.0.0.1:25".to_owned()],
    )
    .unwrap();
    let file = Config::from_yaml(
        "t.yaml",
        "listeners:\n  - {name: l, address: \"127.0.0.1:2525\", upstream: u}\n\
             upstreams:\n  - {name: u, servers: [\"127.0.0.1:25\"]}\n",
    )
    .unwrap();
    assert_eq!(quick.upstreams[0].tls.policy, TlsPolicy::None);
    assert_eq!(file.upstreams[0].tls.policy, quick.upstreams[0].tls.policy);
}

#[test]
fn plaintext_upstream_beyond_local_networks_is_a_warning() {
    for (server, warned) in [
        ("127.0.0.1:25", false),
        ("localhost:25", false),
        ("10.1.2.3:25", false),
        ("192.168.0.9:25", false),
        ("[::1]:25", false),
        ("[fd00::5]:25", false),
        ("[fe80::1]:25", false),
        ("mx.example.net:25", true),
        ("192.0.2.1:25", true),
        ("[2001:db8::1]:25", true),
    ] {
        let quick = Config::quick(
            vec!["127.0.0.1:2525".parse().unwrap()],
            vec![server.to_owned()],
        )
        .unwrap();
        let text: Vec<String> = quick.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            text.iter().any(|w| w.contains("in plaintext")),
            warned,
            "{server}: {text:?}"
        );
    }
}

#[test]
fn quick_reports_bad_servers_and_missing_parts() {
    let err = Config::quick(vec![], vec!["no-port".to_owned()]).unwrap_err();
    let keys: Vec<_> = err.0.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, ["upstreams[0].servers[0]", "listeners"]);
    assert!(err.0.iter().all(|d| d.file == "command line"));
    assert!(err.to_string().contains("--listen"));
}

#[test]
fn ipv6_listeners_and_servers_load() {
    let yaml = "\
listeners:
  - name: v6
    address: \"[::1]:2525\"
    upstream: relay
  - name: v6-any
    address: \"[::]:2526\"
    upstream: relay
upstreams:
  - name: relay
    servers: [\"[2001:db8::25]:25\", \"[::1]:2500\"]
";
    let c = load(yaml).unwrap();
    assert_eq!(c.listeners[0].address, "[::1]:2525".parse().unwrap());
    assert!(c.listeners[1].address.is_ipv6());
    let d = only_error(&yaml.replace("\"[::1]:2525\"", "\"::1:2525\""));
    assert_eq!(at(&d), (Some(3), Some(14), "listeners[0].address"));
}

// --- shipped examples -------------------------------------------------------

#[test]
fn every_shipped_example_config_loads_without_warnings() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(config.warnings.is_empty(), "{:?}", config.warnings);
            loaded += 1;
        }
    }
    assert!(
        loaded >= 2,
        "found {loaded} configs in {}",
        folder.display()
    );
}

#[test]
fn full_example_has_two_listeners_and_failover_upstreams() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/replyfix.yaml");
    let c = Config::load(&path).unwrap();
    assert_eq!(c.listeners.len(), 2);
    assert_eq!(c.upstreams.len(), 2);
    assert!(c.upstreams.iter().all(|u| u.servers.len() >= 2));
    assert!(c.admin.is_some());
}

#[test]
fn missing_file_is_reported_with_its_name() {
    let err = Config::load(Path::new("/nonexistent/replyfix.yaml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/replyfix.yaml: cannot read")
    );
}
