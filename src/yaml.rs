//! A YAML tree that remembers where every node and key came from.
//!
//! serde-saphyr parses the text into this tree (every node and key keeps its
//! line and column, via `Spanned`); callers walk it. Rule files are loaded
//! this way so that loading can report *every* problem, each with its file,
//! line and rule id, where parsing straight into typed structs would stop at
//! the first; the configuration reads it to find the line of each key path.
//! There are two readings, one per kind of caller: [`parse`] for a document
//! walked as a tree (keys are YAML values), [`parse_for_structs`] for one that
//! serde also reads into structs (keys are field names).
//!
//! This module only parses; it must never judge content or know a schema.

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
    Int(i128),
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

/// The project's YAML reading options, for rule files and the configuration
/// alike: only YAML 1.2 booleans (`true`, `false`) are booleans, so `y`, `no`
/// or `on` stay strings; errors carry no source snippet, since callers print
/// their own one-line diagnostics.
pub(crate) fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
    }
}

/// Parses one YAML document into a [`Node`] tree. A key is read as a YAML
/// value (`0x1F` is the integer 31; a key that is a list is kept, named
/// `<a list>`). A key given twice in one mapping, or an integer above
/// `i64::MAX`, is a syntax error.
pub(crate) fn parse(text: &str) -> Result<Node, SyntaxError> {
    parse_with::<false>(text, options())
}

/// Parses a document that serde also reads into structs, into the tree of
/// what those structs see, so that a caller can place their errors. Keys are
/// read as serde reads field names: as written (`0x1F` stays `0x1F`), and a
/// key that is null, a list or a map is a syntax error. Every integer serde
/// reads (up to `u64::MAX`) is kept, and a key given twice stays twice in its
/// mapping, in document order, so that the caller can point at the second.
pub(crate) fn parse_for_structs(text: &str) -> Result<Node, SyntaxError> {
    let mut options = options();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    parse_with::<true>(text, options)
}

/// `FIELDS` selects the reading of [`parse_for_structs`].
fn parse_with<const FIELDS: bool>(
    text: &str,
    options: serde_saphyr::Options,
) -> Result<Node, SyntaxError> {
    match serde_saphyr::from_str_with_options::<Option<Spanned<RawValue<FIELDS>>>>(text, options) {
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

fn to_node<const FIELDS: bool>(s: Spanned<RawValue<FIELDS>>) -> Node {
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
                .map(|(k, v)| (to_key(k), to_node(v)))
                .collect(),
        ),
    };
    Node {
        line,
        column,
        value,
    }
}

fn to_key<const FIELDS: bool>(k: Spanned<RawKey<FIELDS>>) -> Key {
    let (line, column) = (k.referenced.line() as usize, k.referenced.column() as usize);
    let name = match k.value {
        RawKey::Field(name) => name,
        RawKey::Value(value) => {
            let key_node = to_node(Spanned::new(value, k.referenced, k.defined));
            match key_node.value {
                Value::Str(s) => s,
                Value::Int(i) => i.to_string(),
                Value::Bool(b) => b.to_string(),
                other => format!("<{}>", other.kind()),
            }
        }
    };
    Key { name, line, column }
}

/// The serde-facing form of [`Value`]: children are `Spanned`. `FIELDS`:
/// the reading of [`parse_for_structs`].
enum RawValue<const FIELDS: bool> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawValue<FIELDS>>>),
    Map(Vec<(Spanned<RawKey<FIELDS>>, Spanned<RawValue<FIELDS>>)>),
}

/// A mapping key: a YAML value ([`parse`]) or a field name
/// ([`parse_for_structs`]).
enum RawKey<const FIELDS: bool> {
    Value(RawValue<FIELDS>),
    Field(String),
}

impl<'de, const FIELDS: bool> Deserialize<'de> for RawValue<FIELDS> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

impl<'de, const FIELDS: bool> Deserialize<'de> for RawKey<FIELDS> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if FIELDS {
            String::deserialize(d).map(RawKey::Field)
        } else {
            RawValue::deserialize(d).map(RawKey::Value)
        }
    }
}

struct RawVisitor<const FIELDS: bool>;

impl<'de, const FIELDS: bool> Visitor<'de> for RawVisitor<FIELDS> {
    type Value = RawValue<FIELDS>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(RawValue::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(RawValue::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        RawValue::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(RawValue::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(RawValue::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        if FIELDS || i64::try_from(v).is_ok() {
            Ok(RawValue::Int(v.into()))
        } else {
            Err(E::custom("integer too large"))
        }
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(RawValue::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(RawValue::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(RawValue::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(RawValue::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key()? {
            let v = map.next_value()?;
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

    /// The entries of a document that is a mapping.
    fn entries(root: Node) -> Vec<(Key, Node)> {
        match root.value {
            Value::Map(entries) => entries,
            other => panic!("expected a map, got {other:?}"),
        }
    }

    #[test]
    fn null_and_collection_keys_are_named_for_rules_and_refused_for_structs() {
        for (key, name) in [
            ("~", "<null>"),
            ("? [a]\n", "<a list>"),
            ("? {a: 1}\n", "<a map>"),
        ] {
            let text = format!("{key}: x\n");
            let rule_entries = entries(parse(&text).unwrap());
            assert_eq!(rule_entries[0].0.name, name, "{text:?}");
            let e = parse_for_structs(&text).unwrap_err();
            assert_eq!(e.line, Some(1), "{text:?}: {e:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn numeric_keys_are_values_for_rules_and_spellings_for_structs(
            n in 0u32..1_000_000,
            form in 0usize..3,
        ) {
            let spelled = match form {
                0 => n.to_string(),
                1 => format!("0x{n:X}"),
                _ => format!("0o{n:o}"),
            };
            let text = format!("{spelled}: x\n");
            let rule_key = entries(parse(&text).unwrap()).remove(0).0;
            proptest::prop_assert_eq!(rule_key.name, n.to_string());
            let struct_key = entries(parse_for_structs(&text).unwrap()).remove(0).0;
            proptest::prop_assert_eq!(struct_key.name, spelled);
            proptest::prop_assert_eq!((struct_key.line, struct_key.column), (1, 1));
        }

        #[test]
        fn every_i64_is_the_same_integer_in_both_readings(v in proptest::prelude::any::<i64>()) {
            let text = format!("a: {v}\n");
            for root in [parse(&text).unwrap(), parse_for_structs(&text).unwrap()] {
                proptest::prop_assert_eq!(&entries(root)[0].1.value, &Value::Int(v.into()));
            }
        }

        #[test]
        fn integers_above_i64_are_kept_for_structs_and_refused_for_rules(
            v in (i64::MAX as u64 + 1)..=u64::MAX,
        ) {
            let text = format!("a: {v}\n");
            let e = parse(&text).unwrap_err();
            proptest::prop_assert_eq!((e.line, e.column), (Some(1), Some(4)));
            let value = entries(parse_for_structs(&text).unwrap()).remove(0).1.value;
            proptest::prop_assert_eq!(value, Value::Int(v.into()));
        }

        #[test]
        fn a_repeated_key_is_refused_for_rules_and_kept_in_order_for_structs(
            key in "k[a-z_]{0,7}",
            times in 2usize..6,
        ) {
            let text: String = (0..times).map(|i| format!("{key}: {i}\n")).collect();
            let e = parse(&text).unwrap_err();
            proptest::prop_assert_eq!(e.line, Some(2));
            let kept = entries(parse_for_structs(&text).unwrap());
            let seen: Vec<_> = kept.iter().map(|(k, v)| (k.name.as_str(), k.line, v.value.clone())).collect();
            let expected: Vec<_> = (0..times).map(|i| (key.as_str(), i + 1, Value::Int(i as i128))).collect();
            proptest::prop_assert_eq!(seen, expected);
        }
    }
}
