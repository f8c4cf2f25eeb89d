//! Tests of `quick`, IPv6 addresses, and the shipped example files.

use super::*;

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
