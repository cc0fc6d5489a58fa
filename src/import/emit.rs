//! The written config as a small tree, and its YAML text. Written by hand rather than through
//! a serializer so that the file reads like one a person wrote (block mappings, short lists on
//! one line, comments where a setting needs a word), and every string is double-quoted, which
//! YAML never reads as another type (`"on"`, `"0x1F"`, `"1e3"` stay strings).

use std::fmt::Write;

#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Str(String),
    Int(i64),
    Bool(bool),
    Seq(Vec<Out>),
    Map(Map),
}

/// A mapping in the order its keys were added, with comment lines among them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Map(Vec<Entry>);

#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Pair(String, Out),
    Comment(String),
}

impl Map {
    pub fn new() -> Self {
        Map::default()
    }

    pub fn set(&mut self, key: &str, value: Out) {
        self.0.push(Entry::Pair(key.to_string(), value));
    }

    /// Sets `key` where it is, or last when it is not there yet.
    pub fn replace(&mut self, key: &str, value: Out) {
        let found = self.0.iter_mut().find_map(|e| match e {
            Entry::Pair(k, v) if k == key => Some(v),
            _ => None,
        });
        match found {
            Some(v) => *v = value,
            None => self.set(key, value),
        }
    }

    pub fn str(&mut self, key: &str, value: &str) {
        self.set(key, Out::Str(value.to_string()));
    }

    pub fn comment(&mut self, text: &str) {
        self.0.push(Entry::Comment(text.to_string()));
    }

    pub fn get(&self, key: &str) -> Option<&Out> {
        self.0.iter().find_map(|e| match e {
            Entry::Pair(k, v) if k == key => Some(v),
            _ => None,
        })
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// True when it holds no key (comments aside).
    pub fn is_empty(&self) -> bool {
        !self.0.iter().any(|e| matches!(e, Entry::Pair(..)))
    }

    /// The pairs, comments left out.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &Out)> {
        self.0.iter().filter_map(|e| match e {
            Entry::Pair(k, v) => Some((k.as_str(), v)),
            Entry::Comment(_) => None,
        })
    }
}

/// The mapping as a YAML document.
pub fn document(map: &Map) -> String {
    let mut out = String::new();
    write_map(&mut out, map, 0);
    out
}

fn write_map(out: &mut String, map: &Map, indent: usize) {
    for entry in &map.0 {
        let pad = " ".repeat(indent);
        match entry {
            Entry::Comment(text) => {
                for line in text.lines() {
                    let _ = writeln!(out, "{pad}# {line}");
                }
            }
            Entry::Pair(key, value) => {
                let _ = write!(out, "{pad}{}:", key_text(key));
                write_value(out, value, indent);
            }
        }
    }
}

/// A value after its key's colon (or after a list's dash).
fn write_value(out: &mut String, value: &Out, indent: usize) {
    match value {
        Out::Map(map) if map.is_empty() => out.push_str(" {}\n"),
        Out::Map(map) => {
            out.push('\n');
            write_map(out, map, indent + 2);
        }
        Out::Seq(items) if items.iter().all(is_scalar) => {
            let items: Vec<String> = items.iter().map(scalar_text).collect();
            let _ = writeln!(out, " [{}]", items.join(", "));
        }
        Out::Seq(items) => {
            out.push('\n');
            for item in items {
                let pad = " ".repeat(indent + 2);
                match item {
                    // The first key goes on the dash's line, the rest under it.
                    Out::Map(map) if !map.is_empty() => {
                        let mut text = String::new();
                        write_map(&mut text, map, indent + 4);
                        let _ = write!(out, "{pad}- {}", &text[indent + 4..]);
                    }
                    other => {
                        let _ = write!(out, "{pad}-");
                        write_value(out, other, indent + 2);
                    }
                }
            }
        }
        scalar => {
            let _ = writeln!(out, " {}", scalar_text(scalar));
        }
    }
}

fn is_scalar(value: &Out) -> bool {
    matches!(value, Out::Str(_) | Out::Int(_) | Out::Bool(_))
}

fn scalar_text(value: &Out) -> String {
    match value {
        Out::Str(s) => quote(s),
        Out::Int(i) => i.to_string(),
        Out::Bool(b) => b.to_string(),
        Out::Seq(_) => "[]".to_string(),
        Out::Map(_) => "{}".to_string(),
    }
}

/// Keys are plain when they are names (`valid_status_codes`, `Accept-Language`), else quoted.
fn key_text(key: &str) -> String {
    let plain = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if plain { key.to_string() } else { quote(key) }
}

/// A YAML double-quoted string: backslash escapes for quotes, backslashes and control
/// characters, everything else as is.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_maps_lists_and_comments_read_as_written() {
        let mut http = Map::new();
        http.set(
            "valid_status_codes",
            Out::Seq(vec![Out::Int(200), Out::Str("300-399".into())]),
        );
        let mut step = Map::new();
        step.str("send", "EHLO x\r\n");
        let mut module = Map::new();
        module.comment("converted");
        module.str("type", "http");
        module.set("http", Out::Map(http));
        module.set("tls", Out::Map(Map::new()));
        module.set("steps", Out::Seq(vec![Out::Map(step)]));
        let mut top = Map::new();
        top.set("m", Out::Map(module));
        assert_eq!(
            document(&top),
            "m:\n  # converted\n  type: \"http\"\n  http:\n    valid_status_codes: [200, \"300-399\"]\n  tls: {}\n  steps:\n    - send: \"EHLO x\\r\\n\"\n"
        );
    }

    #[test]
    fn strings_are_quoted_so_yaml_reads_them_back_unchanged() {
        for text in ["on", "0x1F", "a\"b\\c", "tab\there", "\u{1}", "ünï"] {
            let mut map = Map::new();
            map.str("k", text);
            let back: std::collections::BTreeMap<String, String> =
                serde_saphyr::from_str(&document(&map)).unwrap();
            assert_eq!(back["k"], text);
        }
    }

    #[test]
    fn odd_keys_are_quoted() {
        let mut map = Map::new();
        map.set("a b", Out::Bool(true));
        map.set("X-Token", Out::Int(1));
        assert_eq!(document(&map), "\"a b\": true\nX-Token: 1\n");
    }
}
