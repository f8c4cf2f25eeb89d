//! The rule engine: load, validate, compile and judge (docs/rules.md).
//!
//! A [`RuleSet`] is built from YAML files (see `docs/rules.md`), checked as a
//! whole (every error is reported, each with its file, line and rule id,
//! docs/protocol.md W1–W3), compiled once (regexes, a bitmap of the reply
//! codes any rule can match) and then shared read-only between sessions.
//! [`RuleSet::judge`] takes a complete upstream reply and the session facts
//! and returns a [`Verdict`]: the first rule that matches decides.
//!
//! This module never does I/O beyond reading rule files, never logs, and
//! never rewrites a 2xx, 3xx or `421` reply, whatever the rules say (W2).
//!
//! The files, from the bottom (the YAML tree with positions is `crate::yaml`):
//! `verdict` (facts in, verdict out), `model` (the compiled rule),
//! `diagnostic` (problems with their place), `schema` (typed reads of the
//! tree), `judge` (matching and applying), `examples` (a rule's examples,
//! parsed and run), `compile` (YAML to rules); this file loads rule sets.

mod compile;
mod diagnostic;
mod examples;
mod judge;
mod model;
mod schema;
mod verdict;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::smtp::Reply;

pub use self::diagnostic::{RuleDiagnostic, RulesErrors};
pub use self::examples::ExampleOutcome;
pub(crate) use self::examples::{parse_reply_lines, reply_from_lines};
use self::model::CodeSet;
pub use self::model::{MATCH_TEXT_CAP, Rule};
pub use self::verdict::{Action, SessionFacts, Verdict};

/// The built-in rules, compiled into the binary.
const BUILTIN_YAML: &str = include_str!("../../rules/default.yaml");
/// The file name the built-in rules report in diagnostics.
const BUILTIN_NAME: &str = "rules/default.yaml";

/// A successfully loaded rule set and the warnings found on the way (e.g. a
/// 4xx -> 5xx remap, W2).
#[derive(Debug)]
pub struct Loaded {
    pub rules: RuleSet,
    /// Problems that do not stop the rules from loading; show them.
    pub warnings: Vec<RuleDiagnostic>,
}

/// An immutable, compiled, validated list of rules; `Send + Sync`, meant to
/// be shared through an `Arc` and swapped whole on reload (F5).
#[derive(Clone, Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Reply codes at least one rule can match (W6 fast path).
    codes: CodeSet,
    /// Every rule's `text` pattern in one set, matched in one pass over a
    /// reply's text (W6), in rule order: `When::text_slot` indexes it.
    texts: Option<regex::RegexSet>,
    version: String,
}

impl RuleSet {
    /// The built-in rules (`rules/default.yaml`, compiled in).
    pub fn builtin() -> RuleSet {
        match load_sources(
            &[(BUILTIN_NAME.to_string(), BUILTIN_YAML.to_string())],
            "builtin",
        ) {
            Ok(loaded) => loaded.rules,
            // The unit test `builtin_rules_load_without_errors_or_warnings`
            // keeps this unreachable.
            Err(e) => panic!("the built-in rules do not load: {e}"),
        }
    }

    /// Loads rules from `(file name, YAML text)` pairs. Rules keep the order
    /// of the sources and, inside a source, the order of the file; the first
    /// rule that matches a reply decides. Ids must be unique across sources.
    pub fn from_sources(sources: &[(String, String)]) -> Result<Loaded, RulesErrors> {
        load_sources(sources, "rules")
    }

    /// Loads rules from files and folders, in the order given. A folder
    /// contributes its `*.yaml` and `*.yml` files (not recursively), sorted
    /// by name.
    pub fn load_paths(paths: &[PathBuf]) -> Result<Loaded, RulesErrors> {
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            if path.is_dir() {
                match yaml_files_in(path) {
                    Ok(files) => {
                        for f in files {
                            read_source(&f, &mut sources, &mut errors);
                        }
                    }
                    Err(e) => errors.push(io_diagnostic(path, &e)),
                }
            } else {
                read_source(path, &mut sources, &mut errors);
            }
        }
        if !errors.is_empty() {
            return Err(RulesErrors(errors));
        }
        load_sources(&sources, "rules")
    }

    /// A short digest of the sources (names and texts), stable across runs
    /// and machines, e.g. `builtin-3fa2c1d09e4b` (logged with every rewrite,
    /// W5; a transaction keeps one version, F5).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there are no rules: every reply passes unchanged.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in matching order.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    /// Judges one reply in its session context: the first rule whose every
    /// condition holds decides (docs/rules.md).
    ///
    /// A reply whose code no rule can match returns [`Verdict::NoMatch`]
    /// without looking at its text (W6). A 2xx, 3xx or `421` reply is never
    /// rewritten, even if a rule slipped through validation (W2).
    pub fn judge(&self, reply: &Reply, facts: &SessionFacts<'_>) -> Verdict {
        judge::judge(&self.rules, &self.codes, self.texts.as_ref(), reply, facts)
    }

    /// Runs every rule's `examples:` (for `replyfix test-rules`).
    pub fn run_examples(&self) -> Vec<ExampleOutcome> {
        examples::run(&self.rules, |reply, facts| self.judge(reply, facts))
    }
}

fn yaml_files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if is_yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn read_source(path: &Path, sources: &mut Vec<(String, String)>, errors: &mut Vec<RuleDiagnostic>) {
    match std::fs::read_to_string(path) {
        Ok(text) => sources.push((path.display().to_string(), text)),
        Err(e) => errors.push(io_diagnostic(path, &e)),
    }
}

fn io_diagnostic(path: &Path, e: &std::io::Error) -> RuleDiagnostic {
    RuleDiagnostic {
        file: path.display().to_string(),
        line: None,
        column: None,
        rule_id: None,
        key: None,
        message: format!("cannot read: {e}"),
    }
}

fn load_sources(sources: &[(String, String)], prefix: &str) -> Result<Loaded, RulesErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut rules: Vec<Rule> = Vec::new();
    for (name, text) in sources {
        let file: Arc<str> = Arc::from(name.as_str());
        let mut d = diagnostic::Diags::new(&file, &mut errors, &mut warnings);
        rules.extend(compile::compile_file(text, &mut d));
    }
    // Ids are unique across all files.
    let mut seen: std::collections::HashMap<&str, &Rule> = std::collections::HashMap::new();
    for r in &rules {
        if let Some(first) = seen.get(r.id()) {
            errors.push(RuleDiagnostic {
                file: r.file().to_string(),
                line: Some(r.line),
                column: None,
                rule_id: Some(r.id().to_string()),
                key: Some("id".into()),
                message: format!(
                    "duplicate rule id (first defined at {}:{})",
                    first.file(),
                    first.line()
                ),
            });
        } else {
            seen.insert(r.id(), r);
        }
    }
    if !errors.is_empty() {
        return Err(RulesErrors(errors));
    }
    let mut codes = CodeSet::EMPTY;
    for r in &rules {
        codes.union_with(&r.when.code_set());
    }
    let texts = text_set(&mut rules);
    let version = format!("{prefix}-{}", digest(sources));
    Ok(Loaded {
        rules: RuleSet {
            rules,
            codes,
            texts,
            version,
        },
        warnings,
    })
}

/// One [`regex::RegexSet`] of every rule's `text`, each rule told its slot.
/// Every pattern compiled alone already (within its own size limit), so the
/// union can only fail on size: then judging falls back to rule by rule.
fn text_set(rules: &mut [Rule]) -> Option<regex::RegexSet> {
    let mut patterns = Vec::new();
    for r in rules.iter_mut() {
        if let Some(p) = &r.when.text_pattern {
            r.when.text_slot = Some(patterns.len());
            patterns.push(p.clone());
        }
    }
    if patterns.is_empty() {
        return None;
    }
    let set = regex::RegexSetBuilder::new(&patterns)
        .size_limit(64 << 20)
        // The union's lazy DFA thrashes under the default 2 MiB cache
        // (judging then takes 100x longer); the cache grows only as
        // states are visited, per thread.
        .dfa_size_limit(8 << 20)
        .build()
        .ok();
    if set.is_none() {
        for r in rules.iter_mut() {
            r.when.text_slot = None;
        }
    }
    set
}

/// 48 bits of FNV-1a over the sources' names and texts, as 12 hex digits.
fn digest(sources: &[(String, String)]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (name, text) in sources {
        eat(&(name.len() as u64).to_le_bytes());
        eat(name.as_bytes());
        eat(&(text.len() as u64).to_le_bytes());
        eat(text.as_bytes());
    }
    format!("{:012x}", h >> 16)
}

#[cfg(test)]
mod tests;
