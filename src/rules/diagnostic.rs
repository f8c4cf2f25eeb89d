//! Problems found while loading rules, each with its file, line, column,
//! rule id and key ([`RuleDiagnostic`]), and the collector the loader fills
//! for one file ([`Diags`]).

use std::fmt;
use std::sync::Arc;

use crate::yaml::{Key, Node};

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

/// Collects diagnostics for one file.
pub(crate) struct Diags<'a> {
    pub(crate) file: &'a Arc<str>,
    pub(crate) errors: &'a mut Vec<RuleDiagnostic>,
    pub(crate) warnings: &'a mut Vec<RuleDiagnostic>,
    pub(crate) rule_id: Option<String>,
}

impl<'a> Diags<'a> {
    pub(crate) fn new(
        file: &'a Arc<str>,
        errors: &'a mut Vec<RuleDiagnostic>,
        warnings: &'a mut Vec<RuleDiagnostic>,
    ) -> Self {
        Diags {
            file,
            errors,
            warnings,
            rule_id: None,
        }
    }

    pub(crate) fn diag(
        &self,
        line: usize,
        column: usize,
        key: &str,
        message: String,
    ) -> RuleDiagnostic {
        RuleDiagnostic {
            file: self.file.to_string(),
            line: (line > 0).then_some(line),
            column: (column > 0).then_some(column),
            rule_id: self.rule_id.clone(),
            key: (!key.is_empty()).then(|| key.to_string()),
            message,
        }
    }

    pub(crate) fn error(&mut self, at: &Node, key: &str, message: impl Into<String>) {
        let d = self.diag(at.line, at.column, key, message.into());
        self.errors.push(d);
    }

    pub(crate) fn error_at_key(&mut self, at: &Key, key: &str, message: impl Into<String>) {
        let d = self.diag(at.line, at.column, key, message.into());
        self.errors.push(d);
    }

    pub(crate) fn warning(&mut self, at: &Node, key: &str, message: impl Into<String>) {
        let d = self.diag(at.line, at.column, key, message.into());
        self.warnings.push(d);
    }

    pub(crate) fn error_count(&self) -> usize {
        self.errors.len()
    }
}
