//! A YAML document as an untyped tree whose every value and key keeps its line, and the walk
//! over its mappings that notices every key nobody read.
//!
//! The importer reads other programs' files (blackbox_exporter's, Prometheus'), whose keys are
//! open-ended: a typed struct with `deny_unknown_fields` would stop at the first key vantage
//! cannot convert, and one without would drop it silently. A tree lets each key be converted,
//! or named with its line as not converted.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};

use super::findings::Findings;
use crate::build::S;

#[derive(Debug)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<S<Node>>),
    Map(Vec<(S<String>, S<Node>)>),
}

impl Node {
    /// The value as text, as the source programs read scalars: `5s`, `200` and `true` alike.
    pub fn scalar(&self) -> Option<String> {
        match self {
            Node::Str(s) => Some(s.clone()),
            Node::Int(i) => Some(i.to_string()),
            Node::Float(f) => Some(f.to_string()),
            Node::Bool(b) => Some(b.to_string()),
            Node::Null | Node::Seq(_) | Node::Map(_) => None,
        }
    }

    /// Null, `false`, `""`, `[]` or `{}`: what blackbox reads as the option left out.
    pub fn is_empty(&self) -> bool {
        match self {
            Node::Null => true,
            Node::Bool(b) => !b,
            Node::Str(s) => s.is_empty(),
            Node::Seq(items) => items.is_empty(),
            Node::Map(entries) => entries.is_empty(),
            Node::Int(_) | Node::Float(_) => false,
        }
    }
}

/// A parse of `text`, or the parser's message (with its line) when it is not YAML.
pub fn parse(text: &str) -> Result<S<Node>, String> {
    serde_saphyr::from_str::<S<Node>>(text).map_err(|e| e.to_string())
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        i64::try_from(v).map(Node::Int).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<S<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<S<String>>()? {
            entries.push((key, map.next_value::<S<Node>>()?));
        }
        Ok(Node::Map(entries))
    }
}

/// The line a value was written on.
pub fn line(node: &S<Node>) -> u64 {
    node.referenced.line()
}

/// One mapping being converted: its keys are taken one by one, and [`Table::finish`] names
/// every key left over as not converted, so that nothing is dropped without a word.
pub struct Table<'a> {
    entries: &'a [(S<String>, S<Node>)],
    taken: Vec<bool>,
    /// The key path of the mapping, as `modules.http_2xx.http`.
    pub path: String,
    /// Where the mapping itself was written, for findings about a key it lacks.
    pub line: u64,
}

impl<'a> Table<'a> {
    /// The mapping in `node`, or `None` (reported) when `node` is another kind of value. A
    /// `null` (a key written with nothing after it) is an empty mapping.
    pub fn of(node: &'a S<Node>, path: &str, findings: &mut Findings) -> Option<Table<'a>> {
        let entries: &[_] = match &node.value {
            Node::Map(entries) => entries,
            Node::Null => &[],
            _ => {
                findings.skip(line(node), path, "expected a mapping");
                return None;
            }
        };
        Some(Table {
            entries,
            taken: vec![false; entries.len()],
            path: path.to_string(),
            line: line(node),
        })
    }

    /// The value of `key`, marked as read. A key written twice is the parser's error already.
    pub fn take(&mut self, key: &str) -> Option<&'a S<Node>> {
        let i = self.entries.iter().position(|(k, _)| k.value == key)?;
        self.taken[i] = true;
        Some(&self.entries[i].1)
    }

    /// The line `key` was written on (for a mapping or a list in block style, the line
    /// before its first item).
    pub fn line_of(&self, key: &str) -> Option<u64> {
        self.entries
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(k, _)| k.referenced.line())
    }

    /// `key`'s path under this mapping.
    pub fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// The keys left, in the order written, marked as read, each with the line it is on.
    pub fn rest(&mut self) -> Vec<(&'a str, &'a S<Node>, u64)> {
        let mut rest = Vec::new();
        for (i, (key, value)) in self.entries.iter().enumerate() {
            if !self.taken[i] {
                self.taken[i] = true;
                rest.push((key.value.as_str(), value, key.referenced.line()));
            }
        }
        rest
    }

    /// Names every key not taken: with the reason from `known` when it is there (keys the
    /// source program documents that vantage has no equivalent for), else as a key this
    /// importer does not know. A known key written empty or `false` asks for nothing, as its
    /// default, and is passed over.
    pub fn finish(&mut self, findings: &mut Findings, known: &[(&str, &str)]) {
        for (key, value, at) in self.rest() {
            match known.iter().find(|(k, _)| *k == key) {
                Some(_) if value.value.is_empty() => {}
                Some((_, why)) => findings.skip(at, &self.key(key), *why),
                None => findings.skip(at, &self.key(key), "a key this importer does not know"),
            }
        }
    }
}

/// Text from a scalar, or `None` (reported) from anything else.
pub fn text(node: &S<Node>, path: &str, findings: &mut Findings) -> Option<String> {
    let text = node.value.scalar();
    if text.is_none() {
        findings.skip(line(node), path, "expected a single value");
    }
    text
}

/// A boolean, or `None` (reported).
pub fn boolean(node: &S<Node>, path: &str, findings: &mut Findings) -> Option<bool> {
    match node.value {
        Node::Bool(b) => Some(b),
        _ => {
            findings.skip(line(node), path, "expected true or false");
            None
        }
    }
}

/// The items of a list (`null` is an empty one), or `None` (reported).
pub fn list<'a>(node: &'a S<Node>, path: &str, findings: &mut Findings) -> Option<&'a [S<Node>]> {
    match &node.value {
        Node::Seq(items) => Some(items),
        Node::Null => Some(&[]),
        _ => {
            findings.skip(line(node), path, "expected a list");
            None
        }
    }
}

/// A list of texts (a single text counts as a list of one), or `None` (reported).
pub fn texts(node: &S<Node>, path: &str, findings: &mut Findings) -> Option<Vec<S<String>>> {
    if let Some(one) = node.value.scalar() {
        return Some(vec![S::new(one, node.referenced)]);
    }
    let items = list(node, path, findings)?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        out.push(S::new(
            text(item, &format!("{path}[{i}]"), findings)?,
            item.referenced,
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_and_key_keeps_its_line() {
        let doc = parse("a:\n  b: [1, x]\n  c: true\nd: 5s\n").unwrap();
        let Node::Map(top) = &doc.value else { panic!() };
        assert_eq!(top[0].0.value, "a");
        assert_eq!(top[1].0.referenced.line(), 4);
        let Node::Map(inner) = &top[0].1.value else {
            panic!()
        };
        assert_eq!(line(&inner[1].1), 3);
        let Node::Seq(items) = &inner[0].1.value else {
            panic!()
        };
        assert!(matches!(items[0].value, Node::Int(1)));
        assert!(matches!(&items[1].value, Node::Str(s) if s == "x"));
        assert!(matches!(&top[1].1.value, Node::Str(s) if s == "5s"));
    }

    #[test]
    fn a_table_names_every_key_not_taken_with_its_line() {
        let doc = parse("x: 1\nproxy_url: p\nweird: 2\n").unwrap();
        let mut findings = Findings::new("b.yml");
        let mut table = Table::of(&doc, "m", &mut findings).unwrap();
        assert!(table.take("x").is_some());
        table.finish(&mut findings, &[("proxy_url", "no proxies")]);
        let lines: Vec<String> = findings.items().iter().map(|i| i.to_string()).collect();
        assert_eq!(
            lines,
            [
                "b.yml:2: m.proxy_url: not converted: no proxies",
                "b.yml:3: m.weird: not converted: a key this importer does not know",
            ]
        );
    }

    #[test]
    fn not_yaml_is_an_error_with_its_line() {
        let e = parse("a: [1,\nb: }").unwrap_err();
        assert!(e.contains("line"), "{e}");
    }
}
