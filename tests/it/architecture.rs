//! The shape of `src/`: no import cycle between its files, and no file over 700 lines.
//!
//! The layers and their direction are in ARCHITECTURE.md; these checks keep the cycles that
//! the one-folder-per-probe layout removed from coming back.
//!
//! A file depends on another when it names a module the other defines: in a `use` (grouped,
//! nested, over several lines), or in a path in code (`crate::x::y`, `super::x`, or a path that
//! starts with one of its own child modules). Only std: this reads the source as text, with
//! comments and literals blanked out first, which is enough for paths.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
const MAX_LINES: usize = 700;

#[test]
fn no_import_cycle_between_the_files_of_src() {
    let graph = graph(&sources());
    let tangles = tangles(&graph);
    let report: Vec<String> = tangles
        .iter()
        .map(|files| {
            let cycle = cycle_through(&graph, files);
            format!(
                "a cycle: {}\n  ({} files tangled together: {})",
                cycle.join(" -> "),
                files.len(),
                files.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(
        report.is_empty(),
        "src/ has import cycles between files:\n{}",
        report.join("\n")
    );
}

#[test]
fn no_file_in_src_is_over_700_lines() {
    let mut long: Vec<String> = sources()
        .iter()
        .map(|(file, text)| (file, text.lines().count()))
        .filter(|(_, lines)| *lines > MAX_LINES)
        .map(|(file, lines)| format!("{file}: {lines} lines"))
        .collect();
    long.sort();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}

/// Every `.rs` file under `src/`, by its path from the repository (`src/net.rs`), with its text.
fn sources() -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(Path::new(SRC), &mut files);
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(Path::new(SRC)).unwrap();
            let name = format!("src/{}", rel.display());
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

/// The module a file under `src/` defines: `src/lib.rs` and `src/main.rs` the crate roots,
/// `src/foo/mod.rs` and `src/foo.rs` both `foo`.
fn module_of(file: &str) -> Vec<String> {
    let rel = file
        .strip_prefix("src/")
        .unwrap()
        .strip_suffix(".rs")
        .unwrap();
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file-level graph: each file (test-only files left out) to the files it depends on.
fn graph(sources: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut test_only = BTreeSet::new();
    let mut parsed = BTreeMap::new();
    for (file, text) in sources {
        let (code, test_children) = without_tests(&blank(text));
        for child in test_children {
            let mut module = module_of(file);
            module.push(child);
            test_only.insert(module);
        }
        parsed.insert(file.clone(), code);
    }
    let modules: BTreeMap<Vec<String>, String> = sources
        .keys()
        .filter(|f| f.as_str() != "src/main.rs")
        .map(|f| (module_of(f), f.clone()))
        .filter(|(m, _)| !test_only.contains(m))
        .collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        let mut targets = BTreeSet::new();
        for path in paths(&parsed[file], module, &children(&modules, module)) {
            if let Some(target) = file_of(&modules, &path)
                && target != file
            {
                targets.insert(target.clone());
            }
        }
        graph.insert(file.clone(), targets);
    }
    // The binary's root: it names the library as `vantage`, and nothing can import it back.
    if let Some(code) = parsed.get("src/main.rs") {
        let targets = paths(code, &[], &BTreeSet::new())
            .iter()
            .filter_map(|path| file_of(&modules, path).cloned())
            .collect();
        graph.insert("src/main.rs".to_string(), targets);
    }
    graph
}

/// The names of `module`'s child modules that have files of their own.
fn children(modules: &BTreeMap<Vec<String>, String>, module: &[String]) -> BTreeSet<String> {
    modules
        .keys()
        .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
        .map(|m| m[module.len()].clone())
        .collect()
}

/// The file that defines `path` (absolute, from the crate root): the longest prefix of it that
/// is a module with a file.
fn file_of<'a>(modules: &'a BTreeMap<Vec<String>, String>, path: &[String]) -> Option<&'a String> {
    (0..=path.len()).rev().find_map(|n| modules.get(&path[..n]))
}

/// `text` with comments, string literals and character literals replaced by spaces (newlines
/// kept), so that what is left is code: a path named in a comment or message is no import.
fn blank(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    // Pushes chars[from..to] as blanks, keeping line breaks.
    let blanked = |out: &mut String, from: usize, to: usize| {
        for &c in &chars[from..to.min(chars.len())] {
            out.push(if c == '\n' { '\n' } else { ' ' });
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let start = i;
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"' | '#'))
            && !chars[..i]
                .last()
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"..." or r#"..."#, ended by the quote and as many hashes.
            let mut hashes = 0;
            i += 1;
            while chars.get(i) == Some(&'#') {
                hashes += 1;
                i += 1;
            }
            if chars.get(i) != Some(&'"') {
                out.extend(&chars[start..i]); // r# as in r#type: a raw identifier
                continue;
            }
            i += 1;
            while i < chars.len() {
                if chars[i] == '"' && chars[i + 1..].iter().take(hashes).all(|&h| h == '#') {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A character literal ('x', '\n', '\'', '\u{1F600}'), not a lifetime ('a).
            i += if next == Some('\\') { 3 } else { 2 };
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else {
            out.push(c);
            i += 1;
            continue;
        }
        blanked(&mut out, start, i);
    }
    out
}

/// `code` without its unit tests: everything from a `#[cfg(test)]` followed by `mod tests {`
/// on. Also the names of the child modules declared test-only (`#[cfg(test)]` then `mod x;`),
/// whose files are tests too.
fn without_tests(code: &str) -> (String, Vec<String>) {
    let lines: Vec<&str> = code.lines().collect();
    let mut kept = Vec::new();
    let mut test_children = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "#[cfg(test)]" {
            let next = lines.get(i + 1).map_or("", |l| l.trim());
            let declared = next.strip_prefix("pub ").unwrap_or(next);
            if let Some(name) = declared.strip_prefix("mod ") {
                let name = name.trim_end_matches([';', '{', ' ']);
                if next.ends_with(';') {
                    test_children.push(name.to_string());
                    i += 2;
                    continue;
                }
                if name == "tests" {
                    break;
                }
            }
        }
        kept.push(lines[i]);
        i += 1;
    }
    (kept.join("\n"), test_children)
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Colons,
    Open,
    Close,
    Comma,
    Star,
    Semicolon,
    Other,
}

fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Word(chars[start..i].iter().collect()));
            continue;
        }
        i += 1;
        out.push(match c {
            ':' if chars.get(i) == Some(&':') => {
                i += 1;
                Token::Colons
            }
            '{' => Token::Open,
            '}' => Token::Close,
            ',' => Token::Comma,
            '*' => Token::Star,
            ';' => Token::Semicolon,
            c if c.is_whitespace() => continue,
            _ => Token::Other,
        });
    }
    out
}

/// The absolute module paths (from the crate root) that the code of `module` names, in its
/// `use` declarations and its paths in code. `children` are `module`'s child modules with files:
/// a path may start with one of them.
fn paths(code: &str, module: &[String], children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let tokens = tokens(code);
    let mut found = Vec::new();
    // The module each open brace is in: an inline `mod x { ... }` changes it for its body.
    let mut scopes: Vec<Vec<String>> = vec![module.to_vec()];
    let mut i = 0;
    while i < tokens.len() {
        let current = scopes.last().unwrap().clone();
        // Child modules with files are the file's own; an inline module's are not files.
        let own = (current == module).then_some(children);
        match &tokens[i] {
            Token::Word(w) if w == "mod" => {
                if let (Some(Token::Word(name)), Some(Token::Open)) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    let mut inner = current.clone();
                    inner.push(name.clone());
                    scopes.push(inner);
                    i += 3;
                    continue;
                }
            }
            Token::Word(w) if w == "use" => {
                let end = tokens[i..]
                    .iter()
                    .position(|t| *t == Token::Semicolon)
                    .map_or(tokens.len(), |p| i + p);
                for path in use_tree(&tokens[i + 1..end]) {
                    found.extend(absolute(&current, &path, own));
                }
                i = end + 1;
                continue;
            }
            Token::Word(w) if tokens.get(i + 1) == Some(&Token::Colons) => {
                // A path in code: not the middle of a longer one (`x::crate` cannot be).
                let inside = i > 0 && tokens[i - 1] == Token::Colons;
                if !inside {
                    let mut path = vec![w.clone()];
                    let mut j = i + 1;
                    while tokens.get(j) == Some(&Token::Colons) {
                        match tokens.get(j + 1) {
                            Some(Token::Word(next)) => path.push(next.clone()),
                            _ => break,
                        }
                        j += 2;
                    }
                    found.extend(absolute(&current, &path, own));
                    i = j;
                    continue;
                }
            }
            Token::Open => scopes.push(current),
            Token::Close if scopes.len() > 1 => {
                scopes.pop();
            }
            _ => {}
        }
        i += 1;
    }
    found
}

/// The paths a use tree (the tokens between `use` and `;`) names: `a::{b, c::{d, e}}` names
/// `a::b`, `a::c::d` and `a::c::e`. `self` in a group is the group's prefix; `as` renames are
/// dropped.
fn use_tree(tokens: &[Token]) -> Vec<Vec<String>> {
    fn tree(tokens: &[Token], i: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        loop {
            match tokens.get(*i) {
                Some(Token::Word(w)) if w == "as" => {
                    *i += 2;
                    out.push(path);
                    return;
                }
                // `self` in a group is the group's prefix; a leading one stays, for `absolute`.
                Some(Token::Word(w)) if w == "self" && !prefix.is_empty() => {
                    *i += 1;
                }
                Some(Token::Word(w)) => {
                    path.push(w.clone());
                    *i += 1;
                }
                Some(Token::Colons) => *i += 1,
                Some(Token::Star) => {
                    *i += 1;
                    out.push(path);
                    return;
                }
                Some(Token::Open) => {
                    *i += 1;
                    while !matches!(tokens.get(*i), None | Some(Token::Close)) {
                        tree(tokens, i, &path, out);
                        if tokens.get(*i) == Some(&Token::Comma) {
                            *i += 1;
                        }
                    }
                    *i += 1;
                    return;
                }
                _ => {
                    out.push(path);
                    return;
                }
            }
        }
    }
    let mut tokens = tokens;
    // `pub use`, `pub(crate) use` start at `use`; only a leading `::` is left to drop.
    if tokens.first() == Some(&Token::Colons) {
        tokens = &tokens[1..];
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        tree(tokens, &mut i, &[], &mut out);
        if tokens.get(i) == Some(&Token::Comma) {
            i += 1;
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

/// `path`, as written in `module`, from the crate root; `None` for another crate's path.
/// `children`: the child modules a path may start with (`None` inside an inline module, whose
/// children are not files).
fn absolute(
    module: &[String],
    path: &[String],
    children: Option<&BTreeSet<String>>,
) -> Option<Vec<String>> {
    let mut base = module.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate" | "vantage") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        Some(first) if children.is_some_and(|c| c.contains(first)) => {}
        _ => return None,
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// The sets of files that import each other in a circle (strongly connected components with
/// more than one file), by Tarjan's algorithm.
fn tangles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, file: &'a str) {
        let n = s.index.len();
        s.index.insert(file, n);
        s.low.insert(file, n);
        s.stack.push(file);
        for next in s.graph.get(file).into_iter().flatten() {
            let next = next.as_str();
            if !s.index.contains_key(next) {
                visit(s, next);
                let low = s.low[file].min(s.low[next]);
                s.low.insert(file, low);
            } else if s.stack.contains(&next) {
                let low = s.low[file].min(s.index[next]);
                s.low.insert(file, low);
            }
        }
        if s.low[file] == s.index[file] {
            let mut component = BTreeSet::new();
            while let Some(top) = s.stack.pop() {
                component.insert(top.to_string());
                if top == file {
                    break;
                }
            }
            if component.len() > 1 {
                s.out.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for file in graph.keys() {
        if !state.index.contains_key(file.as_str()) {
            visit(&mut state, file);
        }
    }
    state.out.sort();
    state.out
}

/// A shortest cycle through the first file of `files` (a tangle), staying inside it: the files
/// in import order, the first repeated at the end.
fn cycle_through(
    graph: &BTreeMap<String, BTreeSet<String>>,
    files: &BTreeSet<String>,
) -> Vec<String> {
    let start = files.iter().next().unwrap();
    let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(file) = queue.pop_front() {
        for next in graph[file].iter().filter(|n| files.contains(*n)) {
            if next == start {
                // Back from `file` to the start along the search's tree, then round again.
                let mut cycle = vec![file.clone()];
                let mut at = file;
                while at != start {
                    at = came_from[at];
                    cycle.push(at.clone());
                }
                cycle.reverse();
                cycle.push(start.clone());
                return cycle;
            }
            if !came_from.contains_key(next) {
                came_from.insert(next, file);
                queue.push_back(next);
            }
        }
    }
    unreachable!("a tangle has a cycle through each of its files")
}

// The parser's own tests, on small inline sources.

fn names(paths: &[&str]) -> Vec<Vec<String>> {
    paths
        .iter()
        .map(|p| p.split("::").map(str::to_string).collect())
        .collect()
}

fn found(code: &str, module: &str, children: &[&str]) -> Vec<Vec<String>> {
    let module: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let children = children.iter().map(|c| c.to_string()).collect();
    paths(&without_tests(&blank(code)).0, &module, &children)
}

#[test]
fn a_grouped_use_over_several_lines_names_each_path() {
    let code = "use std::fmt;\npub(crate) use crate::{\n    net,\n    tls::Verdict,\n};\n";
    assert_eq!(found(code, "probe", &[]), names(&["net", "tls::Verdict"]));
}

#[test]
fn a_nested_group_names_each_leaf_with_its_prefixes() {
    let code = "use crate::{a::{b, c::{d as e, self}}, f::*};";
    assert_eq!(
        found(code, "", &[]),
        names(&["a::b", "a::c::d", "a::c", "f"])
    );
}

#[test]
fn super_and_self_are_resolved_from_the_file_and_inline_modules() {
    let code = "use super::{Failure, tcp::Step};\nuse self::inner::X;\n\
                mod ldap {\n    use super::Dialect;\n}\n";
    assert_eq!(
        found(code, "probe::starttls", &[]),
        names(&[
            "probe::Failure",
            "probe::tcp::Step",
            "probe::starttls::inner::X",
            "probe::starttls::Dialect",
        ])
    );
}

#[test]
fn inline_paths_in_code_count_but_not_in_comments_strings_or_tests() {
    let code = "// crate::commented\nfn f() -> crate::store::Store {\n    \
                let s = \"crate::quoted\";\n    let c = '\"';\n    tcp::connect(crate::net::Addr);\n    \
                std::mem::drop(s);\n}\n#[cfg(test)]\nmod tests {\n    use crate::config;\n}\n";
    assert_eq!(
        found(code, "probe", &["tcp"]),
        names(&["store::Store", "probe::tcp::connect", "net::Addr"])
    );
}

#[test]
fn a_test_only_child_file_is_no_module_of_the_graph() {
    let (_, children) = without_tests("mod raw;\n#[cfg(test)]\nmod tests;\n");
    assert_eq!(children, vec!["tests".to_string()]);
}

#[test]
fn a_cycle_is_found_and_shown_in_import_order() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("src/a.rs", &["src/b.rs"][..]),
        ("src/b.rs", &["src/c.rs", "src/d.rs"]),
        ("src/c.rs", &["src/a.rs"]),
        ("src/d.rs", &[]),
    ]
    .into_iter()
    .map(|(f, to)| (f.to_string(), to.iter().map(|t| t.to_string()).collect()))
    .collect();
    let tangles = tangles(&graph);
    assert_eq!(tangles.len(), 1);
    assert_eq!(
        cycle_through(&graph, &tangles[0]),
        ["src/a.rs", "src/b.rs", "src/c.rs", "src/a.rs"]
    );
}
