//! The module import graph of `src/` has no circle: dependencies point one way.
//!
//! Every file under `src/` is a module (`mod.rs` stands for its folder). An edge `a → b` is a
//! path in `a` that starts with `crate::`, `super::`, `self::` or `tcr_adapter::` (in a `use`,
//! brace groups expanded, or inline in code) and names an item of the file module `b`. A module
//! and its own ancestors or descendants are one house (a parent declares its children, a child may
//! use what its parent shares), so those edges do not count; every other edge does. The test fails
//! on any strongly connected group of two or more modules and names the edges that close it.
//!
//! A circle can also close through a folder's own files: `x/mod.rs → y/a.rs` and `y/b.rs →
//! x/mod.rs` make no circle between files, yet folders `x` and `y` import each other. So every
//! edge is also lifted to the two sibling modules under the deepest module both ends share
//! (`registry::pipeline::jobs → registry::ahead::absent` becomes `registry::pipeline →
//! registry::ahead`), and that graph must have no circle either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type ModPath = Vec<String>;

/// `src/a/b.rs` and `src/a/b/mod.rs` → `["a", "b"]`; `src/lib.rs`, `src/main.rs` → `[]`.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut segs: ModPath = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        segs.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) && (segs.len() > 1 || segs[0] != "mod")
    {
        segs.pop();
    }
    segs
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The code with comments, string and char literals blanked (line breaks kept, so positions
/// still map to lines).
fn strip(code: &str) -> String {
    let c: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let blank = |ch: char| if ch == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < c.len() {
        if c[i] == '/' && at(&c, i + 1) == Some('/') {
            while i < c.len() && c[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c[i] == '/' && at(&c, i + 1) == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(&c, i + 1) == Some('*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && at(&c, i + 1) == Some('/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (at(&c, i + 1) == Some('"')
                || (at(&c, i + 1) == Some('#') && !is_ident(c.get(i.wrapping_sub(1)))))
            && !is_ident(c.get(i.wrapping_sub(1)))
        {
            // raw string r"..." / r#"..."#
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &c[i..j.min(c.len())] {
                out.push(blank(ch));
            }
            i = j;
        } else if c[i] == '"' {
            out.push(' ');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < c.len() {
                    out.push(blank(c[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c[i] == '\'' {
            // a char literal ('a', '\n', '\'', '\u{..}'), else a lifetime
            let end = if at(&c, i + 1) == Some('\\') {
                (i + 3..c.len()).find(|&k| c[k] == '\'').map(|k| k + 1)
            } else if at(&c, i + 2) == Some('\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(e) => {
                    for _ in i..e {
                        out.push(' ');
                    }
                    i = e;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

fn at(c: &[char], k: usize) -> Option<char> {
    c.get(k).copied()
}

fn is_ident(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Sep, // ::
    Open,
    Close,
    Comma,
    Star,
    Other(char),
}

/// Tokens with the line they stand on.
fn tokens(code: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch.is_alphanumeric() || ch == '_' || ch == '$' {
            let start = i;
            i += 1;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), line));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::Sep, line));
            i += 2;
        } else {
            out.push((
                match ch {
                    '{' => Tok::Open,
                    '}' => Tok::Close,
                    ',' => Tok::Comma,
                    '*' => Tok::Star,
                    other => Tok::Other(other),
                },
                line,
            ));
            i += 1;
        }
    }
    out
}

/// Parse a path tree starting at `toks[i]` (an identifier); push every full path (brace groups
/// expanded) to `out`. Returns the index after the tree.
fn path_tree(
    toks: &[(Tok, usize)],
    mut i: usize,
    prefix: &[String],
    out: &mut Vec<Vec<String>>,
) -> usize {
    let mut path = prefix.to_vec();
    loop {
        match toks.get(i).map(|t| &t.0) {
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                i += 1;
            }
            Some(Tok::Star) => {
                i += 1;
                break;
            }
            Some(Tok::Open) => {
                i += 1;
                loop {
                    match toks.get(i).map(|t| &t.0) {
                        Some(Tok::Close) => {
                            i += 1;
                            break;
                        }
                        Some(Tok::Comma) => i += 1,
                        Some(Tok::Ident(_)) | Some(Tok::Star) | Some(Tok::Open) => {
                            i = path_tree(toks, i, &path, out)
                        }
                        None => break,
                        Some(_) => i += 1,
                    }
                }
                return i;
            }
            _ => break,
        }
        if toks.get(i).map(|t| &t.0) == Some(&Tok::Sep) {
            i += 1;
        } else {
            break;
        }
    }
    out.push(path);
    i
}

struct Graph {
    modules: BTreeSet<ModPath>,
    /// (from, to) → first place (file:line) that makes the edge
    edges: BTreeMap<(ModPath, ModPath), String>,
}

fn resolve(modules: &BTreeSet<ModPath>, current: &ModPath, path: &[String]) -> Option<ModPath> {
    let (mut base, rest): (ModPath, &[String]) = match path.first().map(String::as_str) {
        Some("crate") | Some("tcr_adapter") => (Vec::new(), &path[1..]),
        Some("self") => (current.clone(), &path[1..]),
        Some("super") => {
            let mut m = current.clone();
            let mut k = 0;
            while path.get(k).map(String::as_str) == Some("super") {
                m.pop()?;
                k += 1;
            }
            (m, &path[k..])
        }
        _ => return None,
    };
    // Walk into child modules as long as the path names one.
    for seg in rest {
        let mut next = base.clone();
        next.push(seg.clone());
        if modules.contains(&next) || !modules.contains(&base) {
            base = next;
        } else {
            break;
        }
    }
    // Inline modules (`mod tests { .. }`) are part of their file: the longest file-module prefix.
    while !modules.contains(&base) {
        base.pop()?;
    }
    Some(base)
}

fn build(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_of(src, f)).collect();
    let mut edges = BTreeMap::new();
    for file in &files {
        let module = module_of(src, file);
        let code = strip(&std::fs::read_to_string(file).unwrap());
        let toks = tokens(&code);
        // Inline modules: (brace depth their body opened at, name).
        let mut inline: Vec<(usize, String)> = Vec::new();
        let mut depth = 0usize;
        let mut i = 0;
        while i < toks.len() {
            let (tok, line) = &toks[i];
            match tok {
                Tok::Open => depth += 1,
                Tok::Close => {
                    if inline.last().is_some_and(|(d, _)| *d == depth) {
                        inline.pop();
                    }
                    depth = depth.saturating_sub(1);
                }
                Tok::Ident(kw) if kw == "mod" => {
                    if let (Some((Tok::Ident(name), _)), Some((Tok::Open, _))) =
                        (toks.get(i + 1), toks.get(i + 2))
                    {
                        inline.push((depth + 1, name.clone()));
                    }
                }
                Tok::Ident(s)
                    if matches!(s.as_str(), "crate" | "super" | "self" | "tcr_adapter")
                        && toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Sep) =>
                {
                    // `$crate::` in macros, `pub(in crate::x)` and `a::super` are not imports.
                    let prev = i.checked_sub(1).map(|k| &toks[k].0);
                    let after_sep = prev == Some(&Tok::Sep);
                    let after_in = matches!(prev, Some(Tok::Ident(p)) if p == "in");
                    if !after_sep && !after_in {
                        let mut paths = Vec::new();
                        let next = path_tree(&toks, i, &[], &mut paths);
                        let mut current = module.clone();
                        current.extend(inline.iter().map(|(_, n)| n.clone()));
                        for p in paths {
                            if let Some(target) = resolve(&modules, &current, &p) {
                                let related =
                                    target.starts_with(&module) || module.starts_with(&target);
                                if !related {
                                    let at = format!(
                                        "{}:{line}",
                                        file.strip_prefix(src.parent().unwrap()).unwrap().display()
                                    );
                                    edges.entry((module.clone(), target)).or_insert(at);
                                }
                            }
                        }
                        i = next;
                        continue;
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
    Graph { modules, edges }
}

/// Every edge lifted to the sibling modules under the deepest module its ends share (see the
/// module doc); each lifted edge keeps the first place that makes it.
fn siblings(g: &Graph) -> Graph {
    let mut modules = BTreeSet::new();
    let mut edges = BTreeMap::new();
    for ((a, b), at) in &g.edges {
        let shared = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let (a, b) = (a[..shared + 1].to_vec(), b[..shared + 1].to_vec());
        modules.insert(a.clone());
        modules.insert(b.clone());
        edges.entry((a, b)).or_insert_with(|| at.clone());
    }
    Graph { modules, edges }
}

/// Strongly connected components (Tarjan) with two or more modules.
fn cycles(g: &Graph) -> Vec<Vec<ModPath>> {
    let nodes: Vec<&ModPath> = g.modules.iter().collect();
    let index_of: BTreeMap<&ModPath, usize> =
        nodes.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let mut adj = vec![Vec::new(); nodes.len()];
    for (a, b) in g.edges.keys() {
        adj[index_of[a]].push(index_of[b]);
    }
    struct T<'a> {
        adj: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(t: &mut T, v: usize) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for k in 0..t.adj[v].len() {
            let w = t.adj[v][k];
            match t.index[w] {
                None => {
                    visit(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(iw) if t.on[w] => t.low[v] = t.low[v].min(iw),
                _ => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let n = nodes.len();
    let mut t = T {
        adj: &adj,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            visit(&mut t, v);
        }
    }
    t.out
        .into_iter()
        .map(|c| {
            let mut c: Vec<ModPath> = c.into_iter().map(|i| nodes[i].clone()).collect();
            c.sort();
            c
        })
        .collect()
}

fn name(m: &ModPath) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// What closes each circle of `g`, one line per edge.
fn report(g: &Graph, found: &[Vec<ModPath>]) -> String {
    let mut report = String::new();
    for comp in found {
        let names: Vec<String> = comp.iter().map(name).collect();
        report.push_str(&format!("circle: {}\n", names.join(" ↔ ")));
        for ((a, b), at) in &g.edges {
            if comp.contains(a) && comp.contains(b) {
                report.push_str(&format!("  {} → {}  ({at})\n", name(a), name(b)));
            }
        }
    }
    report
}

#[test]
fn the_module_graph_of_src_has_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = build(&src);
    assert!(
        g.modules.len() > 20,
        "src/ was read: {} modules",
        g.modules.len()
    );
    assert!(!g.edges.is_empty(), "imports were found");
    let found = cycles(&g);
    assert!(
        found.is_empty(),
        "the module import graph has circles:\n{}",
        report(&g, &found)
    );
}

#[test]
fn no_two_sibling_folders_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = siblings(&build(&src));
    let found = cycles(&g);
    assert!(
        found.is_empty(),
        "sibling modules import each other (through their files):\n{}",
        report(&g, &found)
    );
}

/// The shape `registry/pipeline/ ↔ registry/ahead/` had: no circle between files, one between
/// folders.
#[test]
fn the_checker_sees_a_circle_between_sibling_folders() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("x")).unwrap();
    std::fs::create_dir_all(src.join("y")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod x; mod y;\n").unwrap();
    std::fs::write(
        src.join("x/mod.rs"),
        "mod j;\nuse crate::y::a::f;\npub fn g() {}\n",
    )
    .unwrap();
    std::fs::write(src.join("x/j.rs"), "pub fn h() {}\n").unwrap();
    std::fs::write(src.join("y/mod.rs"), "mod a;\nmod b;\npub use a::f;\n").unwrap();
    std::fs::write(src.join("y/a.rs"), "pub fn f() {}\n").unwrap();
    std::fs::write(src.join("y/b.rs"), "use crate::x::g;\n").unwrap();
    let g = build(&src);
    assert!(
        cycles(&g).is_empty(),
        "no circle between files: {:?}",
        g.edges
    );
    let found = cycles(&siblings(&g));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0], vec![vec!["x".to_string()], vec!["y".to_string()]]);
    // Files of one folder importing each other's siblings stay allowed.
    std::fs::write(src.join("y/b.rs"), "use super::a::f;\n").unwrap();
    assert!(cycles(&siblings(&build(&src))).is_empty());
}

/// The checker itself finds a circle, ignores parent/child edges and inline test modules.
#[test]
fn the_checker_sees_a_two_file_circle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a; mod b;\nuse crate::a::x;\n").unwrap();
    std::fs::write(
        src.join("a/mod.rs"),
        "mod c;\npub fn x() { c::y(); }\n// use crate::b::nothing;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("a/c.rs"),
        "use super::x;\nuse crate::{b::{self, z}, a};\npub fn y() { let s = \"crate::b::q\"; }\n",
    )
    .unwrap();
    std::fs::write(
        src.join("b.rs"),
        "pub fn z() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
    )
    .unwrap();
    let g = build(&src);
    assert!(cycles(&g).is_empty(), "no circle yet: {:?}", g.edges);
    let key = |a: &[&str], b: &[&str]| {
        (
            a.iter().map(|s| s.to_string()).collect::<ModPath>(),
            b.iter().map(|s| s.to_string()).collect::<ModPath>(),
        )
    };
    assert!(g.edges.contains_key(&key(&["a", "c"], &["b"])));
    assert_eq!(g.edges.len(), 1, "{:?}", g.edges);

    std::fs::write(
        src.join("b.rs"),
        "pub fn z() { super::a::c::y() }\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
    )
    .unwrap();
    let found = cycles(&build(&src));
    assert_eq!(found.len(), 1, "{found:?}");
}
