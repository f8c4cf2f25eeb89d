//! The position index: where each key and value of a configuration document
//! was written, as dotted key paths (`listeners[0].upstream`) to line:column
//! and back.
//!
//! This module only locates; it must never judge a value or build a
//! diagnostic.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_saphyr::Spanned;

/// A YAML node with positions, read only to build the [`PositionIndex`].
pub(super) enum Node {
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Node::Map(entries))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// 1-based line and column.
type Pos = (usize, usize);

fn pos_of<T>(spanned: &Spanned<T>) -> Option<Pos> {
    let loc = spanned.referenced;
    let line = usize::try_from(loc.line()).ok()?;
    let column = usize::try_from(loc.column()).ok()?;
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
    pub(super) fn build(root: &Spanned<Node>) -> Self {
        let mut index = PositionIndex::default();
        index.add(String::new(), root);
        index
    }

    fn add(&mut self, path: String, node: &Spanned<Node>) {
        let is_map = matches!(node.value, Node::Map(_));
        if let Some(pos) = pos_of(node) {
            self.values.insert(path.clone(), pos);
            self.all.push((pos, path.clone(), false, is_map));
        }
        match &node.value {
            Node::Map(entries) => {
                for (key, value) in entries {
                    let child = if path.is_empty() {
                        key.value.clone()
                    } else {
                        format!("{path}.{}", key.value)
                    };
                    if let Some(pos) = pos_of(key) {
                        self.keys.insert(child.clone(), pos);
                        self.all.push((pos, child.clone(), true, false));
                    }
                    self.add(child, value);
                }
            }
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.add(format!("{path}[{i}]"), item);
                }
            }
            Node::Scalar => {}
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
