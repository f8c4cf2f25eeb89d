//! Reading a rule file's YAML tree with diagnostics: the keys of a map
//! (unknown and repeated ones reported, [`Fields`]) and typed values
//! (strings, booleans, numbers, string lists), each problem reported with
//! its position and key path. No rule semantics here.

use std::collections::HashSet;

use super::diagnostic::Diags;
use crate::yaml::{Key, Node, Value};

/// Looks up keys of a map node, reporting unknown and repeated keys.
pub(crate) struct Fields<'n> {
    entries: &'n [(Key, Node)],
}

impl<'n> Fields<'n> {
    /// `None` (and an error) when `node` is not a map.
    pub fn of(
        node: &'n Node,
        path: &str,
        allowed: &[&[&str]],
        d: &mut Diags<'_>,
    ) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            d.error(
                node,
                path,
                format!("expected a map, found {}", node.value.kind()),
            );
            return None;
        };
        let mut seen = HashSet::new();
        for (k, _) in entries {
            let at = join(path, &k.name);
            if !allowed.iter().any(|keys| keys.contains(&k.name.as_str())) {
                d.error_at_key(
                    k,
                    &at,
                    format!(
                        "unknown key (expected one of: {})",
                        allowed.concat().join(", ")
                    ),
                );
            } else if !seen.insert(k.name.as_str()) {
                d.error_at_key(k, &at, "key given twice");
            }
        }
        Some(Fields { entries })
    }

    pub fn get(&self, name: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == name)
            .map(|(_, v)| v)
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn get_str<'n>(node: &'n Node, path: &str, d: &mut Diags<'_>) -> Option<&'n str> {
    match &node.value {
        Value::Str(s) => Some(s),
        other => {
            d.error(
                node,
                path,
                format!("expected a string, found {}", other.kind()),
            );
            None
        }
    }
}

pub(crate) fn get_bool(node: &Node, path: &str, d: &mut Diags<'_>) -> Option<bool> {
    match &node.value {
        Value::Bool(b) => Some(*b),
        other => {
            d.error(
                node,
                path,
                format!("expected true or false, found {}", other.kind()),
            );
            None
        }
    }
}

pub(crate) fn get_u32(node: &Node, path: &str, d: &mut Diags<'_>) -> Option<u32> {
    match &node.value {
        Value::Int(i) => match u32::try_from(*i) {
            Ok(v) => Some(v),
            Err(_) => {
                d.error(
                    node,
                    path,
                    format!("{i} is out of range (0 to {})", u32::MAX),
                );
                None
            }
        },
        other => {
            d.error(
                node,
                path,
                format!("expected a whole number, found {}", other.kind()),
            );
            None
        }
    }
}

/// A string or a list of strings.
pub(crate) fn get_str_list<'n>(
    node: &'n Node,
    path: &str,
    d: &mut Diags<'_>,
) -> Option<Vec<(&'n Node, &'n str)>> {
    match &node.value {
        Value::Str(s) => Some(vec![(node, s.as_str())]),
        Value::Seq(items) => {
            let mut out = Vec::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                match get_str(item, &format!("{path}[{i}]"), d) {
                    Some(s) => out.push((item, s)),
                    None => ok = false,
                }
            }
            if out.is_empty() && ok {
                d.error(node, path, "an empty list never matches");
                return None;
            }
            ok.then_some(out)
        }
        other => {
            d.error(
                node,
                path,
                format!(
                    "expected a string or a list of strings, found {}",
                    other.kind()
                ),
            );
            None
        }
    }
}
