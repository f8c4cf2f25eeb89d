//! The position index: where each key and value of a configuration document
//! was written, as dotted key paths (`listeners[0].upstream`) to line:column
//! and back.
//!
//! This module only locates; it must never judge a value or build a
//! diagnostic.

use std::collections::HashMap;

use crate::yaml::{Node, Value};

/// 1-based line and column.
type Pos = (usize, usize);

/// A node's position; none when the parser could not place it (line 0).
fn pos_of(line: usize, column: usize) -> Option<Pos> {
    (line > 0).then_some((line, column))
}

/// Where each key and value of the document is.
#[derive(Default)]
pub(super) struct PositionIndex {
    /// Path of a value -> its position.
    pub(super) values: HashMap<String, Pos>,
    /// Path of a mapping entry -> position of its key.
    keys: HashMap<String, Pos>,
    /// Every (position, path, is_key, is_map), for reverse lookup.
    all: Vec<(Pos, String, bool, bool)>,
}

impl PositionIndex {
    /// Indexes a document read by [`crate::yaml::parse_for_structs`], whose
    /// keys are spelled as serde spells the model's fields.
    pub(super) fn build(root: &Node) -> Self {
        let mut index = PositionIndex::default();
        index.add(String::new(), root);
        index
    }

    fn add(&mut self, path: String, node: &Node) {
        let is_map = matches!(node.value, Value::Map(_));
        if let Some(pos) = pos_of(node.line, node.column) {
            self.values.insert(path.clone(), pos);
            self.all.push((pos, path.clone(), false, is_map));
        }
        match &node.value {
            Value::Map(entries) => {
                for (key, value) in entries {
                    let child = join_path(&path, &key.name);
                    if let Some(pos) = pos_of(key.line, key.column) {
                        self.keys.insert(child.clone(), pos);
                        self.all.push((pos, child.clone(), true, false));
                    }
                    self.add(child, value);
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.add(format!("{path}[{i}]"), item);
                }
            }
            // Scalars have no children.
            _ => {}
        }
    }

    pub(super) fn contains(&self, path: &str) -> bool {
        self.values.contains_key(path) || self.keys.contains_key(path)
    }

    /// Position of `path`'s value (or key); when the path is not in the
    /// document (a default), the nearest ancestor that is, short of the
    /// document itself (line 1 would tell the reader nothing).
    pub(super) fn locate(&self, path: &str) -> Option<Pos> {
        let mut path = path;
        while !path.is_empty() {
            if let Some(pos) = self.values.get(path).or_else(|| self.keys.get(path)) {
                return Some(*pos);
            }
            path = parent_path(path)?;
        }
        None
    }

    /// The key path at `pos`: a key there wins (unknown keys are reported
    /// at the key), then the deepest value there; else the nearest entry
    /// before `pos`.
    pub(super) fn path_at(&self, pos: Pos) -> Option<&str> {
        let exact = |want_key: bool| {
            self.all
                .iter()
                .filter(|(p, _, is_key, _)| *p == pos && *is_key == want_key)
                .max_by_key(|(_, path, _, _)| path.len())
        };
        if let Some((_, path, _, _)) = exact(true).or_else(|| exact(false)) {
            return Some(path);
        }
        self.all
            .iter()
            .filter(|(p, _, _, _)| *p <= pos)
            .max_by_key(|(p, path, _, _)| (*p, path.len()))
            .map(|(_, path, _, _)| path.as_str())
    }

    /// The path of the mapping a missing-field error at `pos` is about.
    /// serde-saphyr reports it at the last key read in that mapping, or at
    /// the mapping itself when it has no keys.
    pub(super) fn map_missing_a_field(&self, pos: Pos) -> Option<&str> {
        let key_here = self
            .all
            .iter()
            .filter(|(p, _, is_key, _)| *p == pos && *is_key)
            .max_by_key(|(_, path, _, _)| path.len());
        if let Some((_, path, _, _)) = key_here {
            return parent_path(path);
        }
        self.all
            .iter()
            .filter(|(p, _, is_key, is_map)| *p == pos && !is_key && *is_map)
            .max_by_key(|(_, path, _, _)| path.len())
            .map(|(_, path, _, _)| path.as_str())
    }
}

fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

pub(super) fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}
