//! Repository hygiene that a compiler does not check: every Rust file says what it owns.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "loadtest/src", "loadtest/tests", "benches", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found the sources");
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .collect();
    assert!(missing.is_empty(), "files without a `//!` module doc: {missing:?}");
}

// ---------------------------------------------------------------------------------------------------
// Layering (issue 13). ARCHITECTURE.md declares the layer order in a ```layers block, bottom layer
// first; a top-level module of `src/` may use only modules on an earlier line. The checker reads every
// `.rs` under `src/` (test files and inline test modules included), strips comments and literals, and
// resolves every `crate::`/`super::`/`self::` path, in `use` trees and inline. `scripts/import-graph.py`
// applies the same rules in Python and draws the graph; keep the two in step.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The source with comments removed and string and character literals emptied (lifetimes kept).
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let (mut out, mut i) = (String::new(), 0);
    while i < c.len() {
        let (prev, prev2) = (if i > 0 { at(i - 1) } else { ' ' }, if i > 1 { at(i - 2) } else { ' ' });
        let hashes = (i + 1..).take_while(|&k| at(k) == '#').count();
        if at(i) == '/' && at(i + 1) == '/' {
            while i < c.len() && at(i) != '\n' {
                i += 1;
            }
        } else if at(i) == '/' && at(i + 1) == '*' {
            let (mut depth, mut j) = (0, i);
            while j < c.len() {
                match (at(j), at(j + 1)) {
                    ('/', '*') => (depth, j) = (depth + 1, j + 2),
                    ('*', '/') => (depth, j) = (depth - 1, j + 2),
                    _ => j += 1,
                }
                if depth == 0 {
                    break;
                }
            }
            (out, i) = (out + " ", j);
        } else if at(i) == 'r' && at(i + 1 + hashes) == '"' && (!ident(prev) || prev == 'b' && !ident(prev2)) {
            let closing = |k: &usize| at(*k) == '"' && (1..=hashes).all(|d| at(k + d) == '#');
            let end = (i + 2 + hashes..c.len()).find(closing).unwrap_or(c.len());
            (out, i) = (out + "\"\"", end + 1 + hashes);
        } else if at(i) == '"' {
            i += 1;
            while i < c.len() && at(i) != '"' {
                i += if at(i) == '\\' { 2 } else { 1 };
            }
            (out, i) = (out + "\"\"", i + 1);
        } else if at(i) == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'') {
            let start = if at(i + 1) == '\\' { i + 3 } else { i + 2 };
            let end = (start..c.len()).find(|&k| at(k) == '\'').unwrap_or(c.len());
            (out, i) = (out + "' '", end + 1);
        } else {
            out.push(at(i));
            i += 1;
        }
    }
    out
}

/// Identifiers, `::` and single punctuation characters.
fn tokens(src: &str) -> Vec<String> {
    let c: Vec<char> = src.chars().collect();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < c.len() {
        if c[i].is_alphanumeric() || c[i] == '_' {
            let n = c[i..].iter().take_while(|ch| ch.is_alphanumeric() || **ch == '_').count();
            out.push(c[i..i + n].iter().collect());
            i += n;
        } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
            out.push("::".to_string());
            i += 2;
        } else {
            if !c[i].is_whitespace() {
                out.push(c[i].to_string());
            }
            i += 1;
        }
    }
    out
}

fn is_ident(t: &str) -> bool {
    t.starts_with(|ch: char| ch.is_alphabetic() || ch == '_')
}

/// One path (or `use` tree) from `t[*i]`, expanded into full paths; `{self, a::B}` and `x as y` handled.
fn tree(t: &[String], i: &mut usize, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    loop {
        match t.get(*i).map(String::as_str) {
            Some("{") => {
                *i += 1;
                while t.get(*i).is_some_and(|s| s != "}") {
                    if t[*i] == "," { *i += 1 } else { tree(t, i, prefix.clone(), out) }
                }
                *i += 1;
                return;
            }
            Some("*") => *i += 1,
            Some(s) if is_ident(s) => {
                if s != "self" || prefix.is_empty() {
                    prefix.push(s.to_string());
                }
                *i += 1;
                if t.get(*i).is_some_and(|s| s == "::") {
                    *i += 1;
                    continue;
                }
            }
            _ => {}
        }
        if t.get(*i).is_some_and(|s| s == "as") {
            *i += 2;
        }
        out.push(prefix);
        return;
    }
}

/// `path` made absolute (`["room", "fanout", "X"]`) for code in module `module`; None if not crate-relative.
fn resolve(path: &[String], module: &[String]) -> Option<Vec<String>> {
    let (mut base, mut rest) = match path.first()?.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" | "super" => (module.to_vec(), path),
        _ => return None,
    };
    while let Some(seg) = rest.first() {
        match seg.as_str() {
            "self" => {}
            "super" => drop(base.pop()?),
            _ => break,
        }
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Every crate-relative path named in `src` (Rust source of module `module`), resolved.
fn crate_paths(src: &str, module: &[String]) -> Vec<Vec<String>> {
    let t = tokens(&strip(src));
    let (mut out, mut inline, mut depth, mut i) = (Vec::new(), Vec::<(String, usize)>::new(), 0, 0);
    while i < t.len() {
        match t[i].as_str() {
            "mod" if t.get(i + 2).is_some_and(|s| s == "{") => inline.push((t[i + 1].clone(), depth)),
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if inline.last().is_some_and(|m| m.1 == depth) {
                    inline.pop();
                }
            }
            s if is_ident(s) && (i == 0 || t[i - 1] != "::") && t.get(i + 1).is_some_and(|s| s == "::") => {
                let here: Vec<String> = module.iter().cloned().chain(inline.iter().map(|m| m.0.clone())).collect();
                let mut paths = Vec::new();
                tree(&t, &mut i, Vec::new(), &mut paths);
                out.extend(paths.iter().filter(|p| p.len() > 1).filter_map(|p| resolve(p, &here)));
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// The ```layers block: (line, modules) bottom first, comments dropped.
fn parse_layers(md: &str) -> Vec<Vec<String>> {
    let block = md.lines().skip_while(|l| l.trim() != "```layers").skip(1).take_while(|l| !l.starts_with("```"));
    let lines = block.map(|l| l.split('#').next().unwrap_or("").split_whitespace().map(String::from).collect());
    lines.filter(|l: &Vec<String>| !l.is_empty()).collect()
}

/// (file relative to the crate, module path) of every `.rs` under `src/` but `lib.rs` and `main.rs`.
fn src_modules() -> Vec<(String, Vec<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut out: Vec<_> = files
        .iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(root.join("src")).ok()?.with_extension("");
            let mut module: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            let exempt = module == ["lib"] || module == ["main"];
            (!exempt).then(|| (format!("src/{}.rs", rel.display()), module))
        })
        .collect();
    out.sort();
    out
}

type Uses = Vec<(String, Vec<String>, Vec<Vec<String>>)>;

/// Per file under `src/`: (file, module path, resolved crate paths).
fn src_uses() -> Uses {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    src_modules().into_iter().map(|(f, m)| (f.clone(), m.clone(), crate_paths(&read(&f), &m))).collect()
}

/// Everything that breaks the declared order: modules missing from or unknown to it, and imports of a
/// module on the same or a higher layer.
fn layer_errors(layers: &[Vec<String>], uses: &Uses) -> Vec<String> {
    let mut errors = Vec::new();
    let mut layer_of = BTreeMap::new();
    for (n, m) in layers.iter().enumerate().flat_map(|(n, line)| line.iter().map(move |m| (n, m))) {
        if layer_of.insert(m.clone(), n).is_some() {
            errors.push(format!("`{m}` is listed twice in the layers block"));
        }
    }
    let tops: BTreeSet<String> = uses.iter().map(|(_, m, _)| m[0].clone()).collect();
    let missing = tops.iter().filter(|m| !layer_of.contains_key(*m));
    errors.extend(missing.map(|m| format!("`{m}` is missing from the layers block")));
    let unknown = layer_of.keys().filter(|m| !tops.contains(*m));
    errors.extend(unknown.map(|m| format!("`{m}` is in the layers block but not in src/")));
    let mut seen = BTreeSet::new();
    for (file, module, paths) in uses {
        for p in paths {
            let (from, to) = (&module[0], &p[0]);
            let (Some(lf), Some(lt)) = (layer_of.get(from), layer_of.get(to)) else { continue };
            if from != to && lt >= lf && seen.insert((file, p)) {
                let which = if lt == lf { "the same" } else { "a higher" };
                errors.push(format!("{file}: {from} uses {to} ({}), which is on {which} layer", p.join("::")));
            }
        }
    }
    errors
}

#[test]
fn modules_use_only_lower_layers() {
    let md = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"));
    let layers = parse_layers(&md.expect("ARCHITECTURE.md"));
    assert!(!layers.is_empty(), "ARCHITECTURE.md has no ```layers block");
    let errors = layer_errors(&layers, &src_uses());
    let list = errors.join("\n");
    assert!(errors.is_empty(), "{} layering errors (order: ARCHITECTURE.md, ```layers):\n{list}\n", errors.len());
}

/// Edges between the children of one top-level module (`session::ws` → `session::http`), root left out.
fn submodule_graph(top: &str) -> BTreeMap<String, BTreeSet<String>> {
    let uses = src_uses();
    let children: BTreeSet<&String> =
        uses.iter().filter(|(_, m, _)| m[0] == top && m.len() > 1).map(|(_, m, _)| &m[1]).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, module, paths) in uses.iter().filter(|(_, m, _)| m[0] == top && m.len() > 1) {
        for p in paths.iter().filter(|p| p[0] == top && p.len() > 1 && p[1] != module[1] && children.contains(&p[1])) {
            graph.entry(format!("{top}::{}", module[1])).or_default().insert(format!("{top}::{}", p[1]));
        }
    }
    graph
}

/// One shortest cycle through each strongly connected group of `graph`, naming the group if it is larger.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let next = |n: &String| graph.get(n).into_iter().flatten();
    let reach = |from: &String| {
        let (mut seen, mut todo) = (BTreeSet::new(), vec![from.clone()]);
        while let Some(n) = todo.pop() {
            todo.extend(next(&n).filter(|m| seen.insert((*m).clone())).cloned());
        }
        seen
    };
    let (mut done, mut out) = (BTreeSet::new(), Vec::new());
    for n in graph.keys().filter(|n| reach(n).contains(*n)) {
        let group: BTreeSet<String> = reach(n).into_iter().filter(|m| reach(m).contains(n)).collect();
        if !done.insert(group.clone()) {
            continue;
        }
        // Breadth-first from n until an edge leads back to n; `back` holds each node's predecessor.
        let (mut back, mut todo) = (BTreeMap::new(), VecDeque::from([n.clone()]));
        let last = 'bfs: loop {
            let a = todo.pop_front().expect("n is in a cycle");
            for b in next(&a).filter(|b| group.contains(*b)) {
                if b == n {
                    break 'bfs a;
                }
                if !back.contains_key(b) {
                    back.insert(b.clone(), a.clone());
                    todo.push_back(b.clone());
                }
            }
        };
        let mut path = vec![n.clone(), last];
        while let Some(p) = back.get(&path[path.len() - 1]) {
            path.push(p.clone());
        }
        path.reverse();
        let more =
            if group.len() >= path.len() { format!(" (all of {group:?} are in one cycle)") } else { String::new() };
        out.push(format!("{}{more}", path.join(" → ")));
    }
    out
}

#[test]
fn no_import_cycles_inside_a_module() {
    let tops: BTreeSet<String> = src_modules().into_iter().map(|(_, m)| m[0].clone()).collect();
    let found: Vec<String> = tops.iter().flat_map(|t| cycles(&submodule_graph(t))).collect();
    assert!(found.is_empty(), "{} import cycles between submodules:\n{}\n", found.len(), found.join("\n"));
}

#[test]
fn import_graph_drawing_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run =
        std::process::Command::new("python3").arg("scripts/import-graph.py").arg("--check").current_dir(root).output();
    let out = run.unwrap_or_else(|e| panic!("python3 is needed to check the drawing in ARCHITECTURE.md: {e}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scripts/import-graph.py --check failed ({}):\n{stdout}{stderr}", out.status);
}

fn paths_of(src: &str, module: &str) -> Vec<String> {
    let module: Vec<String> = module.split("::").map(String::from).collect();
    crate_paths(src, &module).iter().map(|p| p.join("::")).collect()
}

#[test]
fn checker_reads_grouped_and_nested_use() {
    let src = "use crate::{a::B, c::{D, e::{self, F as G}}, h::*};\nuse crate::{self as x};";
    assert_eq!(paths_of(src, "m"), ["a::B", "c::D", "c::e", "c::e::F", "h"]);
}

#[test]
fn checker_reads_inline_paths_and_attributes() {
    let src =
        "#[command(version = crate::build_info::X)]\nfn f() { crate::auth::token_from(&crate::x::Y::<u8>::new()); }";
    assert_eq!(paths_of(src, "m"), ["build_info::X", "auth::token_from", "x::Y"]);
}

#[test]
fn checker_ignores_comments_strings_and_chars() {
    let src = "// crate::a::B\n/* crate::b /* nested */ crate::c */ let s = \"crate::d::E\";\n\
               let r = r#\"crate::e \"# ; let c = '\"'; let q = '\\''; fn f<'a>(x: &'a crate::f::G) {}";
    assert_eq!(paths_of(src, "m"), ["f::G"]);
}

#[test]
fn checker_resolves_super_and_self() {
    let src = "use super::http; use self::inner::X; use super::super::room::Y;\nmod tests { use super::Z; }";
    assert_eq!(paths_of(src, "session::ws"), ["session::http", "session::ws::inner::X", "room::Y", "session::ws::Z"]);
}

#[test]
fn checker_finds_a_cycle() {
    let edges = [("s::a", "s::b"), ("s::b", "s::c"), ("s::c", "s::a"), ("s::c", "s::d"), ("s::b", "s::a")];
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (a, b) in edges {
        graph.entry(a.into()).or_default().insert(b.into());
    }
    assert_eq!(cycles(&graph), [r#"s::a → s::b → s::a (all of {"s::a", "s::b", "s::c"} are in one cycle)"#]);
}

#[test]
fn checker_applies_the_layer_rule() {
    let v = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let p = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    let layers = [v("a b"), v("c"), v("gone")];
    let uses: Uses = vec![
        ("src/c.rs".into(), v("c"), vec![p("a::X"), p("c::Y")]),
        ("src/a/x.rs".into(), p("a::x"), vec![p("c::Z"), p("b::W"), p("a::V")]),
        ("src/d.rs".into(), v("d"), vec![p("c::U")]),
    ];
    let errors = layer_errors(&layers, &uses);
    assert_eq!(
        errors,
        [
            "`d` is missing from the layers block",
            "`b` is in the layers block but not in src/",
            "`gone` is in the layers block but not in src/",
            "src/a/x.rs: a uses c (c::Z), which is on a higher layer",
            "src/a/x.rs: a uses b (b::W), which is on the same layer",
        ]
    );
    let fixed: Uses = vec![uses[0].clone(), ("src/a/x.rs".into(), p("a::x"), vec![p("a::V")])];
    assert_eq!(layer_errors(&[v("a"), v("c")], &fixed), Vec::<String>::new(), "c may use a and itself");
}
