//! Tests of the configuration, by topic; the helpers every topic uses are
//! here.

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

mod check;
mod load;
mod model;
mod parse;
