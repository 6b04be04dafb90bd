//! The architecture test: reads `src/` and fails, naming file and line, when the layering that
//! README's map promises stops being true. The rules:
//!
//! 1. **Resolvers go through services.** A resolver file — `src/**/graphql.rs`,
//!    `src/**/*_graphql.rs`, any file under an aggregate's `graphql/` folder, any file of
//!    `src/graphql/` that is not the shared infrastructure (`http`, `ws`, `admission`,
//!    `context`, `guards`, `loaders`, `scalars`, `pagination`, `mod`), and any file under
//!    `src/admin/` but the admin aggregate's own `service.rs`, `store.rs` and `model.rs` —
//!    neither imports nor calls a store module: `<aggregate>::store` or `billing::events` (the
//!    store of received Stripe events).
//! 2. **Stores are SQL only.** A store file (`src/**/store.rs`, `src/**/store/*.rs`,
//!    `src/billing/events.rs`) uses no GraphQL or HTTP type: `async_graphql`, `axum`,
//!    `crate::graphql`, `crate::http`.
//! 3. **Small files.** No `src/**/*.rs` is over 500 lines; `src/billing/webhook.rs` (HTTP,
//!    signature and envelope only) is at most 250.
//! 4. **No billing cycle.** The modules under `src/billing/` do not import each other in a
//!    cycle, whether through `use` or through inline paths (`super::webhook::apply_state(..)`,
//!    `crate::billing::service::..`).
//!
//! Paths are read from `use` trees and from inline paths, resolved against the file's own
//! module (`super::`, `self::`, `crate::`). Comments, string literals and `#[cfg(test)]` items
//! are not read: a unit-test module may use whatever it tests with. Every rule is a pure
//! function over a file name and its text, unit-tested below on made-up sources, so a reader
//! that stopped seeing paths would fail here rather than let the tree pass.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::Path;

/// Files over this many lines are split.
const MAX_LINES: usize = 500;
/// The webhook keeps HTTP, the signature and the envelope; the rules live elsewhere.
const MAX_WEBHOOK_LINES: usize = 250;
const WEBHOOK: &str = "src/billing/webhook.rs";

/// The shared GraphQL infrastructure in `src/graphql/`: not resolvers of an aggregate.
const GRAPHQL_INFRASTRUCTURE: &[&str] = &[
    "http",
    "ws",
    "admission",
    "context",
    "guards",
    "loaders",
    "scalars",
    "pagination",
    "mod",
];

/// One broken rule, where it is broken.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Violation {
    file: String,
    line: usize,
    detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.detail)
    }
}

/// Every `.rs` file under `src/`, as (`src/...` path with `/`, text), sorted by path.
fn source_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<(String, String)> = crate::common::files_under(&root.join("src"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            let rel = p.strip_prefix(root).expect("under the root");
            let rel = rel.to_string_lossy().replace('\\', "/");
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{rel}: {e}"));
            (rel, text)
        })
        .collect();
    files.sort();
    files
}

/// Fails listing every violation, one a line.
fn assert_none(rule: &str, violations: Vec<Violation>) {
    let mut violations = violations;
    violations.sort();
    violations.dedup();
    assert!(
        violations.is_empty(),
        "{rule}: {} violation(s)\n{}",
        violations.len(),
        violations
            .iter()
            .map(|v| format!("  {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn resolvers_do_not_reach_stores() {
    let files = source_files();
    assert!(
        files.iter().filter(|(p, _)| is_resolver_file(p)).count() >= 5,
        "the resolver files were not found under src/"
    );
    let found = files
        .iter()
        .flat_map(|(path, text)| resolver_store_uses(path, text))
        .collect();
    assert_none("a resolver file imports or calls a store (rule 1)", found);
}

#[test]
fn stores_use_no_graphql_or_http_types() {
    let files = source_files();
    assert!(
        files.iter().filter(|(p, _)| is_store_file(p)).count() >= 5,
        "the store files were not found under src/"
    );
    let found = files
        .iter()
        .flat_map(|(path, text)| store_web_uses(path, text))
        .collect();
    assert_none("a store file uses GraphQL or HTTP types (rule 2)", found);
}

#[test]
fn source_files_stay_small() {
    let files = source_files();
    assert!(files.iter().any(|(p, _)| p == WEBHOOK), "{WEBHOOK} is gone");
    let found = files
        .iter()
        .filter_map(|(path, text)| oversized(path, text))
        .collect();
    assert_none("a source file is too long (rule 3)", found);
}

#[test]
fn billing_modules_import_no_cycle() {
    let files = source_files();
    let billing: Vec<_> = files
        .iter()
        .filter(|(p, _)| p.starts_with("src/billing/"))
        .cloned()
        .collect();
    assert!(billing.len() >= 5, "the billing modules were not found");
    assert_none(
        "billing modules import each other in a cycle (rule 4)",
        billing_cycles(&billing),
    );
}

// ---------------------------------------------------------------------------------------------
// Which file is which.

/// Rule 1's files: resolvers of an aggregate, and the admin resolvers.
fn is_resolver_file(path: &str) -> bool {
    let Some(rel) = path.strip_prefix("src/") else {
        return false;
    };
    let parts: Vec<&str> = rel.split('/').collect();
    let (dirs, name) = parts.split_at(parts.len() - 1);
    let name = name[0];
    if dirs.first() == Some(&"admin") || rel == "admin.rs" {
        // The admin views are an aggregate too: its service may use its store.
        return !matches!(name, "service.rs" | "store.rs" | "model.rs");
    }
    if dirs.first() == Some(&"graphql") {
        // The shared infrastructure, unless a resolver file was put there.
        let top = dirs.get(1).copied().unwrap_or(name.trim_end_matches(".rs"));
        return !GRAPHQL_INFRASTRUCTURE.contains(&top);
    }
    name == "graphql.rs" || name.ends_with("_graphql.rs") || dirs.contains(&"graphql")
}

/// Rule 2's files: SQL only.
fn is_store_file(path: &str) -> bool {
    path.starts_with("src/")
        && (path.ends_with("/store.rs")
            || path.rsplit('/').nth(1) == Some("store")
            || path == "src/billing/events.rs")
}

/// The module a file under `src/` defines: `src/billing/service.rs` → `crate::billing::service`.
fn module_of(path: &str) -> Vec<String> {
    let rel = path.strip_prefix("src/").unwrap_or(path);
    let rel = rel.strip_suffix(".rs").unwrap_or(rel);
    let mut module = vec!["crate".to_string()];
    module.extend(rel.split('/').map(str::to_string));
    if matches!(
        module.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        module.pop();
    }
    module
}

// ---------------------------------------------------------------------------------------------
// The rules, each over one file (or the billing files) and its text.

/// Rule 1: a resolver file's paths that reach a store module.
fn resolver_store_uses(path: &str, text: &str) -> Vec<Violation> {
    if !is_resolver_file(path) {
        return Vec::new();
    }
    references(path, text)
        .into_iter()
        .filter(|(_, target)| is_store_module(target))
        .fold(Vec::<(usize, Vec<String>)>::new(), first_per_line)
        .into_iter()
        .map(|(line, target)| Violation {
            file: path.to_string(),
            line,
            detail: format!("resolver uses the store `{}`", target.join("::")),
        })
        .collect()
}

/// `crate::<aggregate>::store[::...]` or `crate::billing::events[::...]`.
fn is_store_module(target: &[String]) -> bool {
    target.first().is_some_and(|s| s == "crate")
        && (target.iter().skip(1).any(|s| s == "store")
            || target.starts_with(&["crate".into(), "billing".into(), "events".into()]))
}

/// Keeps the first path of each line (a `use` tree names a module and its items at once).
fn first_per_line(
    mut kept: Vec<(usize, Vec<String>)>,
    next: (usize, Vec<String>),
) -> Vec<(usize, Vec<String>)> {
    if kept.last().map(|(line, _)| *line) != Some(next.0) {
        kept.push(next);
    }
    kept
}

/// Rule 2: a store file's paths that reach GraphQL or HTTP types.
fn store_web_uses(path: &str, text: &str) -> Vec<Violation> {
    if !is_store_file(path) {
        return Vec::new();
    }
    references(path, text)
        .into_iter()
        .filter(|(_, target)| {
            let first = target.first().map(String::as_str);
            matches!(first, Some("async_graphql" | "axum"))
                || (first == Some("crate")
                    && matches!(target.get(1).map(String::as_str), Some("graphql" | "http")))
        })
        .fold(Vec::<(usize, Vec<String>)>::new(), first_per_line)
        .into_iter()
        .map(|(line, target)| Violation {
            file: path.to_string(),
            line,
            detail: format!("store uses `{}`", target.join("::")),
        })
        .collect()
}

/// Rule 3: the file's length against its limit.
fn oversized(path: &str, text: &str) -> Option<Violation> {
    let limit = if path == WEBHOOK {
        MAX_WEBHOOK_LINES
    } else {
        MAX_LINES
    };
    let lines = text.lines().count();
    (lines > limit).then(|| Violation {
        file: path.to_string(),
        line: lines,
        detail: format!("{lines} lines (at most {limit})"),
    })
}

/// Rule 4: one violation per cycle among the billing files (given as path, text).
fn billing_cycles(files: &[(String, String)]) -> Vec<Violation> {
    let modules: BTreeMap<Vec<String>, &str> = files
        .iter()
        .map(|(path, _)| (module_of(path), path.as_str()))
        .collect();
    // module → (imported module → first line of the import)
    let mut edges: BTreeMap<&Vec<String>, BTreeMap<&Vec<String>, usize>> = BTreeMap::new();
    for (path, text) in files {
        let from = modules.keys().find(|m| **m == module_of(path)).unwrap();
        let out = edges.entry(from).or_default();
        for (line, target) in references(path, text) {
            // The longest module that the path starts with: `super::store::X` → store.
            let to = modules
                .keys()
                .filter(|m| target.starts_with(m))
                .max_by_key(|m| m.len());
            if let Some(to) = to.filter(|to| *to != from) {
                out.entry(to).or_insert(line);
            }
        }
    }
    let name = |m: &Vec<String>| m[1..].join("::");
    let mut seen: BTreeSet<Vec<&Vec<String>>> = BTreeSet::new();
    let mut found = Vec::new();
    for start in edges.keys() {
        let Some(cycle) = shortest_cycle(&edges, start) else {
            continue;
        };
        // Each cycle once, whichever of its modules it was found from.
        let mut key = cycle.clone();
        key.sort();
        if !seen.insert(key) {
            continue;
        }
        let steps: Vec<String> = cycle
            .iter()
            .zip(cycle.iter().cycle().skip(1))
            .map(|(a, b)| format!("{} ({}:{})", name(b), modules[*a], edges[a][b]))
            .collect();
        found.push(Violation {
            file: modules[cycle[0]].to_string(),
            line: edges[cycle[0]][cycle[1 % cycle.len()]],
            detail: format!("import cycle: {} -> {}", name(cycle[0]), steps.join(" -> ")),
        });
    }
    found
}

/// The shortest path from `start` back to itself (its modules in order), if any.
fn shortest_cycle<'a>(
    edges: &BTreeMap<&'a Vec<String>, BTreeMap<&'a Vec<String>, usize>>,
    start: &'a Vec<String>,
) -> Option<Vec<&'a Vec<String>>> {
    let mut parent: BTreeMap<&Vec<String>, &Vec<String>> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(at) = queue.pop_front() {
        for next in edges.get(at).into_iter().flat_map(|e| e.keys()) {
            if *next == start {
                let mut path = vec![at];
                while let Some(p) = parent.get(path.last().unwrap()) {
                    path.push(p);
                }
                path.reverse();
                return Some(path);
            }
            if !parent.contains_key(next) {
                parent.insert(next, at);
                queue.push_back(next);
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Reading paths out of Rust source.

/// Every path the file names, as (line, path resolved against the file's module): each leaf of
/// each `use` tree and each inline path of two or more segments. `super::`, `self::` and
/// `crate::` paths become `crate::...`; others (external crates, imported names) stay as
/// written.
fn references(path: &str, text: &str) -> Vec<(usize, Vec<String>)> {
    let module = module_of(path);
    let code = without_test_items(&code_only(text));
    let (uses, rest) = split_uses(&code);
    let mut out: Vec<(usize, Vec<String>)> = uses
        .into_iter()
        .chain(inline_paths(&rest))
        .map(|(line, p)| (line, resolve(&module, &p)))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `path` (`a::b::c`) resolved against `module`; a glob's `*` is dropped.
fn resolve(module: &[String], path: &str) -> Vec<String> {
    let segments: Vec<&str> = path
        .split("::")
        .filter(|s| !s.is_empty() && *s != "*")
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut rest = &segments[..];
    match segments.first() {
        Some(&"self") => {
            out.extend_from_slice(module);
            rest = &rest[1..];
        }
        Some(&"super") => {
            out.extend_from_slice(module);
            while rest.first() == Some(&"super") {
                out.pop();
                rest = &rest[1..];
            }
        }
        _ => {}
    }
    out.extend(rest.iter().map(|s| s.to_string()));
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The text with comments, string and char literals blanked (newlines kept, so line numbers
/// hold); lifetimes and raw identifiers stay.
fn code_only(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let next = c.get(i + 1).copied();
        let prev_ident = |k: usize| k > 0 && is_ident(c[k - 1]);
        if c[i] == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '/' && next == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (!prev_ident(i) || (c[i - 1] == 'b' && !prev_ident(i - 1)))
            && matches!(next, Some('"' | '#'))
            && c[i + 1..].iter().find(|&&x| x != '#') == Some(&'"')
        {
            // r"..." / r#"..."#: ends at a quote followed by as many hashes.
            let hashes = c[i + 1..].iter().take_while(|&&x| x == '#').count();
            let body = i + 2 + hashes;
            let mut end = body;
            while end < c.len()
                && !(c[end] == '"'
                    && c[end + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&x| x == '#')
                        .count()
                        == hashes)
            {
                end += 1;
            }
            let end = (end + 1 + hashes).min(c.len());
            for &ch in &c[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else if c[i] == '"' {
            blank(&mut out, c[i]);
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            if i < c.len() {
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if c[i] == '\'' && (next == Some('\\') || c.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\u{..}'); a lifetime ('a) has no closing quote.
            let start = i;
            i += if next == Some('\\') { 3 } else { 2 };
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i = (i + 1).min(c.len());
            for &ch in &c[start..i] {
                blank(&mut out, ch);
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Blanks each item marked `#[cfg(test)]` (a `mod tests { .. }`, a `use`, a `fn`): up to its
/// first `;` outside braces or to the brace closing its body.
fn without_test_items(code: &str) -> String {
    let mut c: Vec<char> = code.chars().collect();
    let marker: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + marker.len() <= c.len() {
        if c[i..i + marker.len()] != marker[..] {
            i += 1;
            continue;
        }
        let mut end = i + marker.len();
        let mut depth = 0usize;
        while end < c.len() {
            match c[end] {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                ';' if depth == 0 => break,
                _ => {}
            }
            end += 1;
        }
        let end = (end + 1).min(c.len());
        for ch in &mut c[i..end] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        i = end;
    }
    c.into_iter().collect()
}

/// The leaves of every `use` statement (line, path), and the code with those statements
/// blanked (so their paths are not read twice).
fn split_uses(code: &str) -> (Vec<(usize, String)>, String) {
    let mut c: Vec<char> = code.chars().collect();
    let mut uses = Vec::new();
    let mut i = 0;
    while i + 4 <= c.len() {
        let keyword = c[i..i + 3] == ['u', 's', 'e']
            && c[i + 3].is_whitespace()
            && (i == 0 || !(is_ident(c[i - 1]) || c[i - 1] == ':'));
        if !keyword {
            i += 1;
            continue;
        }
        let line = c[..i].iter().filter(|&&ch| ch == '\n').count() + 1;
        let end = c[i..]
            .iter()
            .position(|&ch| ch == ';')
            .map_or(c.len(), |p| i + p);
        let tree: String = c[i + 3..end].iter().collect();
        let mut leaves = Vec::new();
        use_tree_leaves("", &tree, &mut leaves);
        uses.extend(leaves.into_iter().map(|leaf| (line, leaf)));
        for ch in &mut c[i..end] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        i = end;
    }
    (uses, c.into_iter().collect())
}

/// Expands a `use` tree (`super::{store::{self, A}, model::B as C}`) into its leaves
/// (`super::store`, `super::store::A`, `super::model::B`).
fn use_tree_leaves(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    let tree = tree.strip_prefix("::").unwrap_or(tree);
    let join = |a: &str, b: &str| match (a.is_empty(), b) {
        (_, "self") => a.to_string(),
        (true, _) => b.to_string(),
        (false, _) => format!("{a}::{b}"),
    };
    let Some(open) = tree.find('{') else {
        let path: String = tree
            .split(" as ")
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|ch| !ch.is_whitespace())
            .collect();
        if !path.is_empty() {
            out.push(join(prefix, &path));
        }
        return;
    };
    let head: String = tree[..open]
        .chars()
        .filter(|ch| !ch.is_whitespace())
        .collect();
    let prefix = join(prefix, head.trim_end_matches("::"));
    let inner = tree[open + 1..]
        .trim_end()
        .strip_suffix('}')
        .unwrap_or(&tree[open + 1..]);
    let mut depth = 0;
    let mut part = String::new();
    for ch in inner.chars().chain([',']) {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                use_tree_leaves(&prefix, &part, out);
                part.clear();
                continue;
            }
            _ => {}
        }
        part.push(ch);
    }
}

/// Inline paths of two or more segments (`crate::billing::store::f`, `super::webhook::g`), with
/// their lines.
fn inline_paths(code: &str) -> Vec<(usize, String)> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < c.len() {
        if c[i] == '\n' {
            line += 1;
        }
        let starts = (is_ident(c[i]) && !c[i].is_numeric())
            && (i == 0 || !(is_ident(c[i - 1]) || c[i - 1] == ':'));
        if !starts {
            i += 1;
            continue;
        }
        let mut segments = Vec::new();
        loop {
            let start = i;
            while i < c.len() && is_ident(c[i]) {
                i += 1;
            }
            segments.push(c[start..i].iter().collect::<String>());
            let more = c.get(i) == Some(&':')
                && c.get(i + 1) == Some(&':')
                && c.get(i + 2).is_some_and(|&ch| is_ident(ch));
            if !more {
                break;
            }
            i += 2;
        }
        if segments.len() >= 2 {
            out.push((line, segments.join("::")));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The rules on made-up sources: each must see what it is there to see.

mod rules {
    use super::*;

    fn lines(v: &[Violation]) -> Vec<(String, usize)> {
        v.iter().map(|v| (v.file.clone(), v.line)).collect()
    }

    #[test]
    fn the_file_kinds() {
        for resolver in [
            "src/audit/graphql.rs",
            "src/billing/events_graphql.rs",
            "src/billing/graphql/events.rs",
            "src/billing/graphql/mod.rs",
            "src/admin/mod.rs",
            "src/admin/stats.rs",
            "src/admin.rs",
            "src/graphql/admin.rs",
        ] {
            assert!(is_resolver_file(resolver), "{resolver}");
        }
        for other in [
            "src/admin/service.rs",
            "src/admin/store.rs",
            "src/graphql/http.rs",
            "src/graphql/mod.rs",
            "src/graphql/ws.rs",
            "src/graphql/admission/apq.rs",
            "src/graphql/pagination.rs",
            "src/billing/service.rs",
            "src/tenants/loader.rs",
            "src/http/internal.rs",
        ] {
            assert!(!is_resolver_file(other), "{other}");
        }
        for store in [
            "src/tenants/store.rs",
            "src/billing/store/invoices.rs",
            "src/billing/events.rs",
        ] {
            assert!(is_store_file(store), "{store}");
        }
        assert!(!is_store_file("src/billing/service.rs"));
        assert_eq!(
            module_of("src/billing/service.rs"),
            ["crate", "billing", "service"]
        );
        assert_eq!(
            module_of("src/billing/state/mod.rs"),
            ["crate", "billing", "state"]
        );
        assert_eq!(module_of("src/lib.rs"), ["crate"]);
    }

    #[test]
    fn comments_and_strings_are_not_code() {
        let src = r##"let a = "crate::x::store::f"; // super::store::g
/* use super::store; /* nested */ */
let r = r#"super::store"#; let c = '"'; fn f<'a>(x: &'a str) {}
let b = b"\"store::x"; let q = '\'';"##;
        let code = code_only(src);
        assert_eq!(code.lines().count(), src.lines().count());
        assert!(!code.contains("store"), "{code}");
        assert!(code.contains("fn f<'a>(x: &'a str) {}"), "{code}");
    }

    #[test]
    fn use_trees_expand_to_their_leaves() {
        let mut leaves = Vec::new();
        use_tree_leaves(
            "",
            " super::{store::{self, A}, model::B as C, *}",
            &mut leaves,
        );
        assert_eq!(
            leaves,
            [
                "super::store",
                "super::store::A",
                "super::model::B",
                "super::*"
            ]
        );
        assert_eq!(
            resolve(
                &module_of("src/billing/graphql/events.rs"),
                "super::super::store::f"
            ),
            ["crate", "billing", "store", "f"]
        );
        assert_eq!(
            resolve(&module_of("src/billing/mod.rs"), "self::events::*"),
            ["crate", "billing", "events"]
        );
    }

    #[test]
    fn a_resolver_importing_or_calling_a_store_is_flagged() {
        let src = "//! Doc naming store::list.\n\
            use super::store::{self, AuditFilter};\n\
            use crate::graphql::guards::RequireRole;\n\
            fn f() {\n\
                let rows = crate::billing::store::invoices_of(c, 1);\n\
                let n = stripe_events::table.count();\n\
                let s = service::list(c);\n\
                let e = super::events::list(c);\n\
            }\n\
            #[cfg(test)]\nmod tests {\n    use crate::quotas::store::alerts;\n}\n";
        let found = resolver_store_uses("src/billing/graphql.rs", src);
        assert_eq!(
            lines(&found),
            [
                ("src/billing/graphql.rs".to_string(), 2),
                ("src/billing/graphql.rs".to_string(), 5),
                ("src/billing/graphql.rs".to_string(), 8),
            ],
            "{found:?}"
        );
        assert!(found[1]
            .detail
            .contains("crate::billing::store::invoices_of"));
        assert!(found[2].detail.contains("crate::billing::events::list"));
        // The same text in a service is fine; the admin resolvers are held to it too.
        assert!(resolver_store_uses("src/billing/service.rs", src).is_empty());
        let admin = "use crate::tenants::store;\n";
        assert_eq!(
            lines(&resolver_store_uses("src/admin/mod.rs", admin)).len(),
            1
        );
    }

    #[test]
    fn a_store_using_graphql_or_http_types_is_flagged() {
        let src = "use diesel::prelude::*;\n\
            use axum::http::StatusCode;\n\
            #[derive(async_graphql::SimpleObject)]\n\
            struct Row;\n\
            fn f() -> crate::graphql::context::Ctx { todo!() }\n\
            fn g() { crate::http::internal::x() }\n\
            fn h() -> crate::error::AppError { todo!() }\n\
            #[cfg(test)]\nmod tests { use async_graphql::Value; }\n";
        let found = store_web_uses("src/quotas/store.rs", src);
        let at: Vec<usize> = found.iter().map(|v| v.line).collect();
        assert_eq!(at, [2, 3, 5, 6], "{found:?}");
        assert_eq!(store_web_uses("src/billing/store/a.rs", src).len(), 4);
        assert_eq!(store_web_uses("src/billing/events.rs", src).len(), 4);
        assert!(store_web_uses("src/quotas/graphql.rs", src).is_empty());
    }

    #[test]
    fn long_files_are_flagged() {
        let text = |n: usize| "x\n".repeat(n);
        assert!(oversized("src/config.rs", &text(500)).is_none());
        let v = oversized("src/config.rs", &text(501)).expect("501 lines");
        assert_eq!((v.file.as_str(), v.line), ("src/config.rs", 501));
        assert!(oversized(WEBHOOK, &text(250)).is_none());
        assert!(oversized(WEBHOOK, &text(251)).is_some());
    }

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    #[test]
    fn billing_cycles_are_flagged_with_their_path() {
        let two = files(&[
            (
                "src/billing/mod.rs",
                "pub mod service;\npub mod webhook;\npub mod store;\n",
            ),
            (
                "src/billing/service.rs",
                "use super::store;\nfn f() {\n    super::webhook::apply_state(c);\n}\n",
            ),
            (
                "src/billing/webhook.rs",
                "use super::{service::apply_plan, store};\n\
                 #[cfg(test)]\nmod tests { use super::*; }\n",
            ),
            ("src/billing/store.rs", "use super::model::Row;\n"),
        ]);
        let found = billing_cycles(&two);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].to_string(),
            "src/billing/service.rs:3: import cycle: billing::service -> \
             billing::webhook (src/billing/service.rs:3) -> \
             billing::service (src/billing/webhook.rs:1)"
        );

        // Three modules, one through `crate::billing::...`, one in a subfolder.
        let three = files(&[
            ("src/billing/a.rs", "use crate::billing::state::decide;\n"),
            ("src/billing/state/mod.rs", "fn f() { super::b::g() }\n"),
            ("src/billing/b.rs", "use super::a::X;\n"),
        ]);
        let found = billing_cycles(&three);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].detail.contains("billing::state"), "{found:?}");

        // One direction only is no cycle.
        let acyclic = files(&[
            ("src/billing/webhook.rs", "use super::service::apply;\n"),
            (
                "src/billing/service.rs",
                "use super::store;\nuse crate::tenants::service;\n",
            ),
            ("src/billing/store.rs", ""),
        ]);
        assert!(billing_cycles(&acyclic).is_empty());
    }
}
