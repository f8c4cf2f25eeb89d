//! The rule engine: load, validate, compile and judge (DESIGN.md "Rules").
//!
//! A [`RuleSet`] is built from YAML files (see `docs/rules.md`), checked as a
//! whole (every error is reported, each with its file, line and rule id,
//! PROTOCOL.md W1–W3), compiled once (regexes, a bitmap of the reply codes
//! any rule can match) and then shared read-only between sessions.
//! [`RuleSet::judge`] takes a complete upstream reply and the session facts
//! and returns a [`Verdict`]: the first rule that matches decides.
//!
//! This module never does I/O beyond reading rule files, never logs, and
//! never rewrites a 2xx, 3xx or `421` reply, whatever the rules say (W2).

mod compile;
mod examples;
mod judge;
mod node;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::smtp::{CommandKind, Reply};

pub use examples::ExampleOutcome;
pub(crate) use examples::{parse_reply_lines, reply_from_lines};

use compile::{CodeSet, Then, When};

/// The built-in rules, compiled into the binary.
const BUILTIN_YAML: &str = include_str!("../../rules/default.yaml");
/// The file name the built-in rules report in diagnostics.
const BUILTIN_NAME: &str = "rules/default.yaml";

/// At most this many bytes of reply text are matched by `text` regexes (W6).
pub const MATCH_TEXT_CAP: usize = 4096;

/// What is known about the session when a reply is judged (P1: the context
/// comes from pairing the reply with its command, never from the reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionFacts<'a> {
    /// The command this reply answers.
    pub command: CommandKind,
    /// The client leg is TLS (STARTTLS done or implicit TLS).
    pub client_tls: bool,
    /// The upstream leg is TLS.
    pub upstream_tls: bool,
    /// The upstream accepted the client's AUTH (RFC 4954 `235`).
    pub authenticated: bool,
    /// Recipients the upstream accepted in the current transaction.
    pub recipients_accepted: u32,
    /// The client's address, when known.
    pub client: Option<IpAddr>,
    /// The name of the listener the client connected to.
    pub listener: &'a str,
    /// The name of the upstream this session relays to.
    pub upstream: &'a str,
}

impl<'a> SessionFacts<'a> {
    /// Facts for `command` with everything else false, zero, `None` or empty.
    pub fn new(command: CommandKind) -> Self {
        SessionFacts {
            command,
            client_tls: false,
            upstream_tls: false,
            authenticated: false,
            recipients_accepted: 0,
            client: None,
            listener: "",
            upstream: "",
        }
    }
}

/// One problem found while loading rules: where it is and what is wrong.
///
/// Displayed as `file:line:column: rule 'id': key: message`, leaving out the
/// parts that are unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleDiagnostic {
    /// The file name as given to the loader.
    pub file: String,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// 1-based column (in characters).
    pub column: Option<usize>,
    /// The rule the problem belongs to, when its id could be read.
    pub rule_id: Option<String>,
    /// The path of the offending key inside the rule, e.g. `then.remap.code`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for RuleDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(id) = &self.rule_id {
            write!(f, "rule '{id}': ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every error found while loading a set of rule files (not just the first).
/// A rule set with any error is not built at all (F5: an invalid file
/// changes nothing).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_all(.0))]
pub struct RulesErrors(pub Vec<RuleDiagnostic>);

fn display_all(diags: &[RuleDiagnostic]) -> String {
    let mut s = format!(
        "{} error{} in rules",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" }
    );
    for d in diags {
        s.push_str("\n  ");
        s.push_str(&d.to_string());
    }
    s
}

/// A successfully loaded rule set and the warnings found on the way (e.g. a
/// 4xx -> 5xx remap, W2).
#[derive(Debug)]
pub struct Loaded {
    pub rules: RuleSet,
    /// Problems that do not stop the rules from loading; show them.
    pub warnings: Vec<RuleDiagnostic>,
}

/// What a rule does to a reply it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Leave the reply exactly as received.
    Keep,
    /// Keep the code and lines and add one explanatory last line.
    Annotate,
    /// New code and enhanced code on every line (W1), optionally new text,
    /// optionally followed by an annotation line.
    Remap,
}

impl Action {
    /// `keep`, `annotate` or `remap` (for logs and metrics).
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Annotate => "annotate",
            Action::Remap => "remap",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of judging one reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No rule matched: the reply passes through byte for byte.
    NoMatch,
    /// A rule matched and said to keep the reply as it is.
    Keep { rule: Arc<str> },
    /// A rule matched and the client should see `reply` instead of the
    /// original. Never produced for a 2xx, 3xx or `421` original (W2).
    Rewrite {
        rule: Arc<str>,
        action: Action,
        reply: Reply,
    },
}

impl Verdict {
    /// The id of the rule that decided, if any.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Verdict::NoMatch => None,
            Verdict::Keep { rule } | Verdict::Rewrite { rule, .. } => Some(rule),
        }
    }

    /// What the client should see: the rewritten reply, or `original`.
    pub fn reply<'a>(&'a self, original: &'a Reply) -> &'a Reply {
        match self {
            Verdict::Rewrite { reply, .. } => reply,
            _ => original,
        }
    }

    /// The action taken: `None` when no rule matched.
    pub fn action(&self) -> Option<Action> {
        match self {
            Verdict::NoMatch => None,
            Verdict::Keep { .. } => Some(Action::Keep),
            Verdict::Rewrite { action, .. } => Some(*action),
        }
    }
}

/// One compiled rule.
#[derive(Clone, Debug)]
pub struct Rule {
    id: Arc<str>,
    description: String,
    file: Arc<str>,
    line: usize,
    when: When,
    then: Then,
    examples: Vec<examples::Example>,
}

impl Rule {
    /// The rule's id, unique in its rule set; used in logs and metrics (W5).
    pub fn id(&self) -> &str {
        &self.id
    }
    /// What the rule is for, as written in its file.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// The file the rule was loaded from.
    pub fn file(&self) -> &str {
        &self.file
    }
    /// The line where the rule starts in [`Rule::file`].
    pub fn line(&self) -> usize {
        self.line
    }
    /// What the rule does when it matches.
    pub fn action(&self) -> Action {
        self.then.action()
    }
    /// Number of `examples:` the rule carries.
    pub fn example_count(&self) -> usize {
        self.examples.len()
    }
}

/// An immutable, compiled, validated list of rules; `Send + Sync`, meant to
/// be shared through an `Arc` and swapped whole on reload (F5).
#[derive(Clone, Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Reply codes at least one rule can match (W6 fast path).
    codes: CodeSet,
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
    /// condition holds decides (DESIGN.md "Rules").
    ///
    /// A reply whose code no rule can match returns [`Verdict::NoMatch`]
    /// without looking at its text (W6). A 2xx, 3xx or `421` reply is never
    /// rewritten, even if a rule slipped through validation (W2).
    pub fn judge(&self, reply: &Reply, facts: &SessionFacts<'_>) -> Verdict {
        judge::judge(self, reply, facts)
    }

    /// Runs every rule's `examples:` (for `replyfix test-rules`).
    pub fn run_examples(&self) -> Vec<ExampleOutcome> {
        examples::run(self)
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
        let mut d = compile::Diags::new(&file, &mut errors, &mut warnings);
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
    let version = format!("{prefix}-{}", digest(sources));
    Ok(Loaded {
        rules: RuleSet {
            rules,
            codes,
            version,
        },
        warnings,
    })
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
