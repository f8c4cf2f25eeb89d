//! `replyfix check`: a configuration and its rules, validated and
//! summarised; every problem with its file, line and key.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use replyfix::config::Config;

use super::{load_rules, mode_name};

pub(super) fn check(config: Option<PathBuf>, rules: Vec<PathBuf>) -> Result<ExitCode> {
    let mut failed = false;
    let mut rule_paths = rules;
    if let Some(path) = &config {
        match Config::load(path) {
            Ok(c) => {
                for w in &c.warnings {
                    eprintln!("warning: {w}");
                }
                out!(
                    "config {}: {} listener(s), {} upstream(s), mode {}",
                    path.display(),
                    c.listeners.len(),
                    c.upstreams.len(),
                    mode_name(c.mode)
                );
                for l in &c.listeners {
                    out!(
                        "  listener {} on {} -> upstream {}",
                        l.name,
                        l.address,
                        l.upstream
                    );
                }
                if rule_paths.is_empty() {
                    rule_paths = c.rules.clone();
                }
            }
            Err(e) => {
                for d in &e.0 {
                    eprintln!("error: {d}");
                }
                failed = true;
            }
        }
    }
    match load_rules(&rule_paths) {
        Ok(rules) => {
            let from = if rule_paths.is_empty() {
                "built-in rules".to_string()
            } else {
                rule_paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out!(
                "rules ({from}): {} rule(s), version {}",
                rules.len(),
                rules.version()
            );
        }
        Err(e) => {
            eprintln!("{e}");
            failed = true;
        }
    }
    if failed {
        eprintln!("check failed: fix the errors above (each names file, line and key or rule id)");
        Ok(ExitCode::FAILURE)
    } else {
        out!("ok");
        Ok(ExitCode::SUCCESS)
    }
}
