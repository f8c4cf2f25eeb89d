//! Tests of the semantic checks: errors and warnings with file:line:key.

use super::*;

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

#[test]
fn the_ehlo_name_is_helo_name_else_a_fully_qualified_hostname_else_the_address_literal() {
    let c = load(&format!("hostname: vm\n{BASE}")).unwrap();
    assert_eq!(
        c.helo_for(&c.upstreams[0]),
        None,
        "short: the address literal"
    );
    let c = load(&format!("hostname: mx.example.net\n{BASE}")).unwrap();
    assert_eq!(
        c.helo_for(&c.upstreams[0]).as_deref(),
        Some("mx.example.net")
    );
    let c = load(&format!(
        "hostname: vm\n{BASE}    helo_name: relay-proxy.example.net\n"
    ))
    .unwrap();
    assert_eq!(
        c.helo_for(&c.upstreams[0]).as_deref(),
        Some("relay-proxy.example.net")
    );
}

#[test]
fn a_helo_name_without_a_domain_is_a_warning_and_on_the_command_line_an_error() {
    let c = load(&format!("{BASE}    helo_name: vm\n")).unwrap();
    let w: Vec<String> = c.warnings.iter().map(|d| d.to_string()).collect();
    assert!(
        w.iter()
            .any(|w| w.contains("upstreams[0].helo_name") && w.contains("not fully qualified")),
        "{w:?}"
    );
    let mut quick = Config::quick(
        vec!["127.0.0.1:2525".parse().unwrap()],
        vec!["127.0.0.1:25".to_owned()],
    )
    .unwrap();
    let e = quick.set_helo_name("vm").unwrap_err();
    assert_eq!(e.0[0].key, "--helo-name");
    assert!(quick.set_helo_name("[192.0.2.1]").is_ok());
    quick.set_helo_name("relay.example.net").unwrap();
    assert_eq!(
        quick.helo_for(&quick.upstreams[0]).as_deref(),
        Some("relay.example.net")
    );
}
