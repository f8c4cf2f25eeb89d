//! The YAML tree rule files are read into: [`crate::yaml`]'s tree, under the
//! names the rule compiler uses. Every node and key keeps its line and
//! column, so loading can report every problem with its place.
//!
//! This module only names; it must never parse or judge anything itself.

pub(crate) use crate::yaml::{Key, Node, Value, parse};
