//! Configuration problems: [`ConfigDiagnostic`] (file, line, column, dotted
//! key, message), [`ConfigError`] (every problem found), and how a
//! serde-saphyr error becomes a diagnostic that names its key.
//!
//! This module only words and places problems; it must never decide whether
//! a setting is valid (that is `check`) or print anything.

use std::fmt;

use super::position::{PositionIndex, join_path};

/// One problem (or warning) in a configuration, pointing at where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDiagnostic {
    /// The file, or `command line` for [`Config::quick`](super::Config::quick).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Dotted key path, e.g. `listeners[0].upstream`; empty for the whole
    /// document.
    pub key: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl fmt::Display for ConfigDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A configuration that cannot be used: every problem found, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_lines(.0))]
pub struct ConfigError(pub Vec<ConfigDiagnostic>);

fn display_lines(diagnostics: &[ConfigDiagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    pub(super) fn single(file: &str, key: &str, message: impl Into<String>) -> Self {
        ConfigError(vec![ConfigDiagnostic {
            file: file.to_owned(),
            line: None,
            column: None,
            key: key.to_owned(),
            message: message.into(),
        }])
    }
}
/// Turns a serde-saphyr error into a diagnostic with file, line, key.
pub(super) fn diagnostic_from_yaml(
    file: &str,
    index: &PositionIndex,
    error: &serde_saphyr::Error,
) -> ConfigDiagnostic {
    use serde_saphyr::Error as E;
    let error = error.without_snippet();
    let pos = error.location().and_then(|loc| {
        let line = usize::try_from(loc.line()).ok()?;
        let column = usize::try_from(loc.column()).ok()?;
        (line > 0).then_some((line, column))
    });
    let here = pos.and_then(|p| index.path_at(p)).unwrap_or("").to_owned();
    let mut pos = pos;
    let (key, message) = match error {
        E::SerdeUnknownField {
            field, expected, ..
        } => (
            // Without an index (unreadable document) still name the key.
            if here.ends_with(field.as_str()) {
                here
            } else {
                join_path(&here, field)
            },
            format!(
                "unknown key '{field}' (check the spelling; allowed here: {})",
                expected.join(", ")
            ),
        ),
        E::SerdeMissingField { field, .. } => {
            let map = pos.and_then(|p| index.map_missing_a_field(p)).unwrap_or("");
            // Point at the mapping that lacks the key, not its last entry.
            if let Some(start) = index.values.get(map).filter(|_| !map.is_empty()) {
                pos = Some(*start);
            }
            (
                join_path(map, field),
                format!("required key '{field}' is missing"),
            )
        }
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => (
            here,
            format!(
                "'{variant}' is not a valid value; use one of: {}",
                expected.join(", ")
            ),
        ),
        E::DuplicateMappingKey { .. } => (here, "key given twice; keep one".to_owned()),
        E::InvalidScalar { ty, .. } => (here, format!("expected {}", describe_type(ty))),
        E::Unexpected { expected, .. } => (here, format!("expected {}", describe_type(expected))),
        other => (here, strip_location(&other.to_string())),
    };
    ConfigDiagnostic {
        file: file.to_owned(),
        line: pos.map(|p| p.0),
        column: pos.map(|p| p.1),
        key,
        message,
    }
}

/// Plain words for the types serde-saphyr names in its errors.
fn describe_type(ty: &str) -> &str {
    match ty {
        "u8" | "u16" | "u32" | "u64" | "usize" | "u128" => "a whole number (0 or more)",
        "i8" | "i16" | "i32" | "i64" | "isize" | "i128" => "a whole number",
        "f32" | "f64" => "a number",
        "bool" => "true or false",
        "sequence start" => "a list (one '- item' per line, or [a, b])",
        "mapping start" => "a mapping of keys to values (key: value)",
        other => other,
    }
}

/// serde-saphyr's `Display` ends with ` at line N, column M`; we print the
/// position in front instead.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(cut) if message[cut..].contains(", column ") => message[..cut].to_owned(),
        _ => message.to_owned(),
    }
}
