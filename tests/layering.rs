//! The house plan stays (DESIGN.md §14): reads every `crate::`, `super::` and `self::` path in
//! `src/` and fails on an import that runs up a floor, or on an import circle between files.
//!
//! The floors are the table at the top of `src/lib.rs` (`//! | N name | `module`, … |`); a
//! file belongs to the floor of the longest module path listed that contains it. A path
//! resolves to the file of the longest module it names; a name another module re-exports
//! (`pub use`) resolves to the file that defines it, so a re-export never hides a circle. A
//! re-export itself may not name anything above its floor, but is not a use: a `mod.rs` that
//! re-exports its children's names and whose children use its own items is no circle. Test code (`#[cfg(test)] mod …` and `tests.rs` children) is not
//! read: tests may use any floor.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module path, e.g. `["presence", "sip"]`; the crate root is empty.
type ModPath = Vec<String>;

struct Source {
    module: ModPath,
    /// Code with comments, strings and test modules removed.
    code: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn module_of(rel: &Path) -> ModPath {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

fn collect(dir: &Path, root: &Path, out: &mut Vec<Source>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read src")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, root, out);
            continue;
        }
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !name.ends_with(".rs") || name == "main.rs" || name == "tests.rs" {
            continue;
        }
        let rel = path.strip_prefix(root).expect("under src");
        let text = fs::read_to_string(&path).expect("read source");
        out.push(Source {
            module: module_of(rel),
            code: strip(&text),
        });
    }
}

/// Removes comments, string and char literals, and `#[cfg(test)]` items.
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'r' && (b[i..].starts_with(b"r\"") || b[i..].starts_with(b"r#")) {
            // Raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while j < b.len() && b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            if j < b.len() && b[j] == b'"' {
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                j += 1;
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = (j + close.len()).min(b.len());
                out.push_str("\"\"");
            } else {
                out.push('r');
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && is_char_literal(&b[i..]) {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            let c = text[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    drop_test_items(&out)
}

/// `'x'`, `'\n'`, `'\u{..}'` but not a lifetime `'a`.
fn is_char_literal(b: &[u8]) -> bool {
    if b.len() >= 3 && b[1] == b'\\' {
        return true;
    }
    let s = String::from_utf8_lossy(&b[1..b.len().min(6)]).into_owned();
    let mut chars = s.chars();
    chars.next().is_some() && chars.next() == Some('\'')
}

/// Removes every item preceded by `#[cfg(test)]` (a `mod … { … }` or `mod …;`, or any
/// other item up to its closing brace or semicolon).
fn drop_test_items(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let b = after.as_bytes();
        let mut depth = 0usize;
        let mut end = b.len();
        for (i, &c) in b.iter().enumerate() {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Every path that starts with `crate`, `super`, `self` or one of the file's own child
/// modules (`children`, made `self::child::…`), use trees expanded, as segments.
fn paths(code: &str, children: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let b = code.as_bytes();
    let child_prefixes: Vec<String> = children.iter().map(|c| format!("{c}::")).collect();
    let mut i = 0;
    while i < b.len() {
        let boundary = i == 0 || !is_ident_byte(b[i - 1]) && b[i - 1] != b':';
        let rooted = [&b"crate::"[..], b"super::", b"self::"]
            .iter()
            .any(|p| b[i..].starts_with(p));
        let child = child_prefixes
            .iter()
            .any(|p| b[i..].starts_with(p.as_bytes()));
        if boundary && (rooted || child) {
            let (tree, used) = read_tree(&code[i..]);
            for mut p in tree {
                if !rooted {
                    p.insert(0, "self".to_string());
                }
                found.push(p);
            }
            i += used.max(1);
        } else {
            i += 1;
        }
    }
    found
}

/// Reads a path or use tree (`a::b::{c, d::e}`) and expands it; returns the paths and the bytes
/// read.
fn read_tree(s: &str) -> (Vec<Vec<String>>, usize) {
    let b = s.as_bytes();
    let mut i = 0;
    let mut prefix: Vec<String> = Vec::new();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'{' {
            i += 1;
            let mut all = Vec::new();
            loop {
                while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                    i += 1;
                }
                if i >= b.len() || b[i] == b'}' {
                    i += 1;
                    break;
                }
                let (sub, used) = read_tree(&s[i..]);
                for p in sub {
                    let mut full = prefix.clone();
                    full.extend(p);
                    all.push(full);
                }
                i += used.max(1);
            }
            return (all, i);
        }
        let start = i;
        while i < b.len() && is_ident_byte(b[i]) {
            i += 1;
        }
        if start == i {
            break;
        }
        prefix.push(s[start..i].to_string());
        if s[i..].starts_with("::") {
            i += 2;
        } else {
            break;
        }
    }
    // `self` inside a use tree (`a::{self, b}`) names the prefix itself.
    if prefix.last().is_some_and(|l| l == "self") && prefix.len() > 1 {
        prefix.pop();
    }
    (vec![prefix], i)
}

struct Crate {
    files: BTreeSet<ModPath>,
    /// Facade re-exports: (module, name) -> the module that defines it.
    reexports: BTreeMap<(ModPath, String), ModPath>,
}

impl Crate {
    /// Makes a path absolute (`crate`, `super`, `self` resolved against `from`).
    fn absolute(&self, from: &ModPath, path: &[String]) -> Option<Vec<String>> {
        let mut segs = path.iter();
        let mut base: ModPath = match segs.next()?.as_str() {
            "crate" => Vec::new(),
            "self" => from.clone(),
            "super" => {
                let mut m = from.clone();
                m.pop()?;
                m
            }
            _ => return None,
        };
        let mut rest: Vec<String> = segs.cloned().collect();
        while rest.first().is_some_and(|s| s == "super") {
            base.pop()?;
            rest.remove(0);
        }
        base.extend(rest);
        Some(base)
    }

    /// The file (module) a path leads to: the longest module it names, then through facade
    /// re-exports.
    fn target(&self, abs: &[String]) -> ModPath {
        let mut best: ModPath = Vec::new();
        for n in 0..=abs.len() {
            let m: ModPath = abs[..n].to_vec();
            if self.files.contains(&m) {
                best = m;
            }
        }
        // A name a facade re-exports leads to the file that defines it.
        if let Some(name) = abs.get(best.len()) {
            if let Some(next) = self.reexports.get(&(best.clone(), name.clone())) {
                best = next.clone();
            }
        }
        best
    }
}

/// Floors from the table in `src/lib.rs`: module path -> (floor number, floor name).
fn floors(lib: &str) -> Vec<(ModPath, u32, String)> {
    let mut out = Vec::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | ") else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Some((num, name)) = cells.first().and_then(|c| c.split_once(' ')) else {
            continue;
        };
        let Ok(num) = num.parse::<u32>() else {
            continue;
        };
        for module in cells.get(1).unwrap_or(&"").split(',') {
            let module = module.trim().trim_matches('`');
            if !module.is_empty() {
                let path = module.split("::").map(str::to_string).collect();
                out.push((path, num, name.trim().to_string()));
            }
        }
    }
    out
}

fn floor_of<'a>(
    floors: &'a [(ModPath, u32, String)],
    m: &ModPath,
) -> Option<&'a (ModPath, u32, String)> {
    floors
        .iter()
        .filter(|(p, _, _)| m.starts_with(p))
        .max_by_key(|(p, _, _)| p.len())
}

fn show(m: &ModPath) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// Strongly connected components with more than one file (Tarjan).
fn circles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct T<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<ModPath, usize>,
        low: BTreeMap<ModPath, usize>,
        stack: Vec<ModPath>,
        on: BTreeSet<ModPath>,
        next: usize,
        out: Vec<Vec<ModPath>>,
    }
    fn visit(t: &mut T<'_>, v: &ModPath) {
        t.index.insert(v.clone(), t.next);
        t.low.insert(v.clone(), t.next);
        t.next += 1;
        t.stack.push(v.clone());
        t.on.insert(v.clone());
        let succ: Vec<ModPath> = t.edges.get(v).into_iter().flatten().cloned().collect();
        for w in succ {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let lw = t.low[&w];
                let lv = t.low[v];
                t.low.insert(v.clone(), lv.min(lw));
            } else if t.on.contains(&w) {
                let iw = t.index[&w];
                let lv = t.low[v];
                t.low.insert(v.clone(), lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = &w == v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    let nodes: Vec<ModPath> = edges.keys().cloned().collect();
    for v in nodes {
        if !t.index.contains_key(&v) {
            visit(&mut t, &v);
        }
    }
    t.out
}

/// The child modules a file declares (`mod x;`, `pub mod x;`).
fn child_modules(code: &str) -> Vec<String> {
    code.split(';')
        .filter_map(|stmt| {
            let words: Vec<&str> = stmt.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "mod")?;
            let name = words.get(at + 1)?;
            (words.len() == at + 2 && name.bytes().all(is_ident_byte)).then(|| name.to_string())
        })
        .collect()
}

/// Where each `pub use` / `pub(crate) use` statement is: (start, end after its `;`).
fn reexport_spans(code: &str) -> Vec<(usize, usize)> {
    let b = code.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let kw = ["pub use ", "pub(crate) use "]
            .into_iter()
            .find(|kw| code[i..].starts_with(kw));
        match kw {
            Some(kw) if i == 0 || !is_ident_byte(b[i - 1]) => {
                let end = code[i..].find(';').map_or(b.len(), |e| i + e + 1);
                spans.push((i + kw.len(), end));
                i = end;
            }
            _ => i += 1,
        }
    }
    spans
}

/// The use trees of the file's re-exports (`a::{B, C}` of `pub use a::{B, C};`).
fn reexports(code: &str) -> Vec<&str> {
    reexport_spans(code)
        .into_iter()
        .map(|(start, end)| code[start..end].trim_end_matches(';').trim())
        .collect()
}

/// The code without its `pub use` re-exports: naming an item again is not using it.
fn without_reexports(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut last = 0;
    for (start, end) in reexport_spans(code) {
        let kw_start = code[..start].rfind("pub").unwrap_or(start);
        out.push_str(&code[last..kw_start]);
        last = end;
    }
    out.push_str(&code[last..]);
    out
}

/// Whether a file only declares modules and re-exports (its code is `mod`, `pub use` and
/// attributes).
fn is_facade(code: &str) -> bool {
    code.split(';').all(|stmt| {
        let s = stmt.trim();
        let s = s
            .lines()
            .filter(|l| !l.trim_start().starts_with("#"))
            .collect::<Vec<_>>()
            .join(" ");
        let s = s.trim();
        s.is_empty()
            || s.starts_with("pub mod ")
            || s.starts_with("mod ")
            || s.starts_with("pub(crate) mod ")
            || s.starts_with("pub use ")
            || s.starts_with("pub(crate) use ")
    })
}

#[test]
fn imports_run_down_the_floors_and_never_in_a_circle() {
    let root = src_dir();
    let mut sources = Vec::new();
    collect(&root, &root, &mut sources);
    let lib = fs::read_to_string(root.join("lib.rs")).expect("src/lib.rs");
    let floors = floors(&lib);
    assert!(
        floors.len() >= 5,
        "src/lib.rs must list the floors as `//! | N name | `module`, … |` rows"
    );

    let mut krate = Crate {
        files: sources.iter().map(|s| s.module.clone()).collect(),
        reexports: BTreeMap::new(),
    };
    // Re-exports: `pub use child::Name;` names Name's defining file. Twice, so that chains of
    // re-exports resolve whatever the order of the files.
    for s in sources.iter().chain(sources.iter()) {
        for tree in reexports(&s.code) {
            let tree = if tree.starts_with("crate::") || tree.starts_with("super::") {
                tree.to_string()
            } else {
                format!("self::{tree}")
            };
            for p in read_tree(&tree).0 {
                let Some(abs) = krate.absolute(&s.module, &p) else {
                    continue;
                };
                let Some(name) = abs.last().cloned() else {
                    continue;
                };
                let target = krate.target(&abs);
                if target != s.module {
                    krate.reexports.insert((s.module.clone(), name), target);
                }
            }
        }
    }

    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    let mut problems = Vec::new();
    for s in &sources {
        if s.module.is_empty() {
            continue; // lib.rs declares the modules
        }
        let facade = is_facade(&s.code);
        let from_floor = floor_of(&floors, &s.module);
        if from_floor.is_none() {
            problems.push(format!(
                "{} is on no floor: add it to the table in src/lib.rs",
                show(&s.module)
            ));
        }
        let children = child_modules(&s.code);
        let used = paths(&without_reexports(&s.code), &children);
        let all = paths(&s.code, &children);
        for p in all {
            let Some(abs) = krate.absolute(&s.module, &p) else {
                continue;
            };
            let to = krate.target(&abs);
            // A re-export only names an item again: it may not reach up a floor, but it is
            // not a use that could close a circle.
            let reexport = !used.contains(&p);
            if to == s.module || to.is_empty() || s.module.starts_with(&to) && facade {
                continue;
            }
            // A facade's re-exports of its own children are structure, not use.
            if facade && to.starts_with(&s.module) {
                continue;
            }
            if let (Some(f), Some(t)) = (from_floor, floor_of(&floors, &to)) {
                if t.1 > f.1 {
                    problems.push(format!(
                        "{} (floor {} {}) imports {} (floor {} {}): `{}`",
                        show(&s.module),
                        f.1,
                        f.2,
                        show(&to),
                        t.1,
                        t.2,
                        p.join("::")
                    ));
                }
            }
            if !reexport {
                edges.entry(s.module.clone()).or_default().insert(to);
            }
        }
    }
    for comp in circles(&edges) {
        let members: BTreeSet<&ModPath> = comp.iter().collect();
        let mut why = Vec::new();
        for a in &comp {
            for b in edges.get(a).into_iter().flatten() {
                if members.contains(b) {
                    why.push(format!("{} -> {}", show(a), show(b)));
                }
            }
        }
        problems.push(format!(
            "import circle between {} files: {}",
            comp.len(),
            why.join(", ")
        ));
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "layering (DESIGN.md §14, floors in src/lib.rs):\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_checker_reads_use_trees_and_skips_comments_strings_and_tests() {
    let code = strip(
        "use crate::a::{b::C, d};\n// use crate::x;\nlet s = \"crate::y\";\n\
         #[cfg(test)]\nmod tests { use crate::z; }\nfn f() { super::e::f(); }",
    );
    let found = paths(&code, &[]);
    assert_eq!(
        found,
        vec![
            vec!["crate", "a", "b", "C"],
            vec!["crate", "a", "d"],
            vec!["super", "e", "f"],
        ]
        .into_iter()
        .map(|p| p.into_iter().map(str::to_string).collect::<Vec<_>>())
        .collect::<Vec<_>>()
    );
    let edges: BTreeMap<ModPath, BTreeSet<ModPath>> = [
        (vec!["a".to_string()], [vec!["b".to_string()]].into()),
        (vec!["b".to_string()], [vec!["a".to_string()]].into()),
        (vec!["c".to_string()], [vec!["a".to_string()]].into()),
    ]
    .into();
    assert_eq!(
        circles(&edges),
        vec![vec![vec!["a".to_string()], vec!["b".to_string()]]]
    );
    assert_eq!(
        paths("sip::spawn(); x::y();", &["sip".to_string()]),
        vec![vec![
            "self".to_string(),
            "sip".to_string(),
            "spawn".to_string()
        ]]
    );
    assert_eq!(child_modules("pub mod a;\nmod b;\nuse c;"), vec!["a", "b"]);
    assert_eq!(without_reexports("pub use a::X;\nuse b::Y;"), "\nuse b::Y;");
    assert_eq!(
        without_reexports("fn f() {}\npub use a::{X, Y};"),
        "fn f() {}\n"
    );
    assert_eq!(
        reexports("pub use a::{X, Y};\nfn f() {}\npub(crate) use b;"),
        ["a::{X, Y}", "b"]
    );
    assert!(is_facade("pub mod a;\nmod b;\npub use a::X;\n"));
    assert!(!is_facade("pub mod a;\npub struct Y;\n"));
}
