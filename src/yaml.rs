//! A YAML tree that remembers where every node and key came from.
//!
//! Rule files are read in two steps: serde-saphyr parses the text into this
//! tree (so every value keeps its line and column, via `Spanned`), then
//! `model` walks the tree and reports *every* problem it finds, each with the
//! file, line and rule id. Parsing straight into typed structs would stop at
//! the first unknown key or wrong type; this tree lets loading collect all
//! errors at once. This module only parses; it never judges rule content.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A value with the 1-based line and column where it starts.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub line: usize,
    pub column: usize,
    pub value: Value,
}

/// A mapping key with its position.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Key {
    pub name: String,
    pub line: usize,
    pub column: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys in document order. A key that is not a scalar is kept with a
    /// name describing it, so the schema walk can report it.
    Map(Vec<(Key, Node)>),
}

impl Value {
    /// A short name of the YAML kind, for messages ("a string", "a list").
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }
}

/// Where a YAML syntax error was found, and what it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

/// Parses one YAML document into a [`Node`] tree. Only YAML 1.2 booleans
/// (`true`, `false`) are booleans: `y`, `no` or `on` stay strings.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
    };
    match serde_saphyr::from_str_with_options::<Option<Spanned<RawValue>>>(text, options) {
        Ok(Some(s)) => Ok(to_node(s)),
        Ok(None) => Ok(Node {
            line: 1,
            column: 1,
            value: Value::Null,
        }),
        Err(e) => {
            let loc = e.location();
            let plain = e.without_snippet().to_string();
            // The plain rendering may repeat the position; keep its first
            // line, which holds the message.
            let message = plain.lines().next().unwrap_or("invalid YAML").to_string();
            Err(SyntaxError {
                line: loc.map(|l| l.line() as usize).filter(|&l| l > 0),
                column: loc.map(|l| l.column() as usize).filter(|&c| c > 0),
                message,
            })
        }
    }
}

fn to_node(s: Spanned<RawValue>) -> Node {
    let (line, column) = (s.referenced.line() as usize, s.referenced.column() as usize);
    let value = match s.value {
        RawValue::Null => Value::Null,
        RawValue::Bool(b) => Value::Bool(b),
        RawValue::Int(i) => Value::Int(i),
        RawValue::Float(f) => Value::Float(f),
        RawValue::Str(t) => Value::Str(t),
        RawValue::Seq(items) => Value::Seq(items.into_iter().map(to_node).collect()),
        RawValue::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    let key_node = to_node(k);
                    let name = match &key_node.value {
                        Value::Str(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => format!("<{}>", other.kind()),
                    };
                    (
                        Key {
                            name,
                            line: key_node.line,
                            column: key_node.column,
                        },
                        to_node(v),
                    )
                })
                .collect(),
        ),
    };
    Node {
        line,
        column,
        value,
    }
}

/// The serde-facing form of [`Value`]: children are `Spanned`.
enum RawValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawValue>>),
    Map(Vec<(Spanned<RawValue>, Spanned<RawValue>)>),
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_none<E>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
        RawValue::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<RawValue, E> {
        Ok(RawValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
        i64::try_from(v)
            .map(RawValue::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawValue, E> {
        Ok(RawValue::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<RawValue, E> {
        Ok(RawValue::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<RawValue>>()? {
            items.push(item);
        }
        Ok(RawValue::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Spanned<RawValue>>()? {
            let v = map.next_value::<Spanned<RawValue>>()?;
            entries.push((k, v));
        }
        Ok(RawValue::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_and_keys_keep_their_lines_and_columns() {
        let n = parse("rules:\n  - id: a\n    when:\n      code: 530\n").unwrap();
        let Value::Map(top) = &n.value else {
            panic!("{n:?}")
        };
        assert_eq!((top[0].0.line, top[0].0.column), (1, 1));
        let Value::Seq(rules) = &top[0].1.value else {
            panic!()
        };
        assert_eq!(rules[0].line, 2);
        let Value::Map(rule) = &rules[0].value else {
            panic!()
        };
        assert_eq!(rule[0].0.name, "id");
        assert_eq!((rule[0].0.line, rule[0].0.column), (2, 5));
        assert_eq!(rule[0].1.value, Value::Str("a".into()));
        let Value::Map(when) = &rule[1].1.value else {
            panic!()
        };
        assert_eq!(when[0].1.value, Value::Int(530));
        assert_eq!((when[0].0.line, when[0].1.line), (4, 4));
    }

    #[test]
    fn scalars_keep_their_yaml_types() {
        let n = parse("[true, 1.5, \"530\", 5xx, 5.7.0, ~, y, no]").unwrap();
        let Value::Seq(items) = n.value else { panic!() };
        let kinds: Vec<_> = items.iter().map(|n| n.value.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                Value::Bool(true),
                Value::Float(1.5),
                Value::Str("530".into()),
                Value::Str("5xx".into()),
                Value::Str("5.7.0".into()),
                Value::Null,
                Value::Str("y".into()),
                Value::Str("no".into()),
            ]
        );
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = parse("rules:\n  - id: [unclosed\n").unwrap_err();
        assert!(e.line.is_some(), "{e:?}");
        assert!(!e.message.is_empty());
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse("").unwrap().value, Value::Null);
        assert_eq!(parse("# only a comment\n").unwrap().value, Value::Null);
    }
}
