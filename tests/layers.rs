//! The modules of `src/` stack in layers: a module imports from its own
//! layer or from below, never from above, and no modules import each other
//! in a circle. This test reads the source (not the compiled crate) and
//! fails on the first change that breaks either rule, naming the file, the
//! line and the import. `ARCHITECTURE.md` draws the same layers.
//!
//! The unit is a top-level module of the crate (`store`, `rules`, a folder
//! and everything in it), except in `base`, whose files are separate leaves
//! and each a unit. Files inside one unit may use each other freely (a
//! module and its submodules). Test code (`#[cfg(test)]` items, `tests.rs`
//! files, `src/testing.rs`) is not part of the layering.
//!
//! `RECALL_LAYERS_SRC=/path/to/src cargo test --test layers` checks another
//! tree (e.g. an older commit's) and prints what it finds there.

mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use source::{SourceFile, product_files, strip_comments_and_strings, strip_test_items};

/// The layers from the bottom up, each with its top-level modules. The
/// single written statement of the order; ARCHITECTURE.md shows it.
const LAYERS: &[(&str, &[&str])] = &[
    ("leaves", &["base", "predict"]),
    ("what the clinic writes", &["config", "import"]),
    ("the database", &["store"]),
    (
        "judging customers and reading results",
        &["facts", "churn", "rules", "templates", "report", "demo"],
    ),
    ("the engines", &["engine", "dispatch"]),
    ("the senders", &["senders"]),
    ("the service", &["setup", "service", "ruletest"]),
    ("the front", &["cli", "bench"]),
];

/// Modules that are not part of the product (test support).
const NOT_LAYERED: &[&str] = &["testing"];

#[derive(Debug, Clone)]
struct Import {
    file: String,
    line: usize,
    from: String,
    to: String,
    text: String,
}

#[test]
fn modules_import_only_from_their_layer_or_below_and_never_in_a_circle() {
    let src = std::env::var_os("RECALL_LAYERS_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let imports = read_imports(&src);
    assert!(
        imports.len() > 100,
        "only {} imports found under {}: is this the crate's src/?",
        imports.len(),
        src.display()
    );
    let mut problems = Vec::new();

    let mut unlayered = BTreeSet::new();
    for import in &imports {
        for unit in [&import.from, &import.to] {
            if layer_of(unit).is_none() {
                unlayered.insert(top(unit).to_string());
            }
        }
    }
    for module in &unlayered {
        problems.push(format!(
            "module `{module}` is in no layer: add it to LAYERS in tests/layers.rs and to ARCHITECTURE.md"
        ));
    }

    let mut upward = 0;
    for import in &imports {
        if let (Some(from), Some(to)) = (layer_of(&import.from), layer_of(&import.to))
            && to > from
        {
            upward += 1;
            problems.push(format!(
                "{}:{}: `{}` (layer {}, {}) imports `{}` from layer {} ({}): {}",
                import.file,
                import.line,
                import.from,
                from,
                LAYERS[from].0,
                import.to,
                to,
                LAYERS[to].0,
                import.text
            ));
        }
    }

    let circles = circles(&imports);
    for (members, circle) in &circles {
        let mut lines = vec![format!(
            "{} modules import each other in a circle ({}), e.g. {}",
            members.len(),
            members.join(", "),
            circle.join(" → ")
        )];
        for pair in circle.windows(2) {
            if let Some(import) = imports
                .iter()
                .find(|i| i.from == pair[0] && i.to == pair[1])
            {
                lines.push(format!(
                    "    {}:{}: {}",
                    import.file, import.line, import.text
                ));
            }
        }
        problems.push(lines.join("\n"));
    }

    assert!(
        problems.is_empty(),
        "{} upward import(s), {} circle(s), {} module(s) in no layer under {}:\n{}",
        upward,
        circles.len(),
        unlayered.len(),
        src.display(),
        problems.join("\n")
    );
}

/// The layer of a unit, by its top-level module.
fn layer_of(unit: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&top(unit)))
}

fn top(unit: &str) -> &str {
    unit.split("::").next().unwrap_or(unit)
}

/// The unit a module path belongs to: `base::clock` for anything under
/// `base::clock`, else the top-level module.
fn unit(path: &[String]) -> Option<String> {
    match path {
        [] => None,
        [first, second, ..] if first == "base" => Some(format!("base::{second}")),
        [first, ..] => Some(first.clone()),
    }
}

/// Every import between two different units in the product's files.
fn read_imports(src: &Path) -> Vec<Import> {
    let mut imports = Vec::new();
    for SourceFile {
        relative,
        text,
        code,
    } in product_files(src)
    {
        let module = module_path(&relative);
        let Some(from) = unit(&module) else { continue };
        if NOT_LAYERED.contains(&top(&from)) {
            continue;
        }
        for (index, line) in code.lines().enumerate() {
            for path in paths_in(line, &module) {
                let Some(to) = unit(&path) else { continue };
                let seen = imports.iter().any(|i: &Import| {
                    i.line == index + 1
                        && i.to == to
                        && i.file.ends_with(&*relative.to_string_lossy())
                });
                if to != from && !NOT_LAYERED.contains(&top(&to)) && !seen {
                    imports.push(Import {
                        file: format!("src/{}", relative.display()),
                        line: index + 1,
                        from: from.clone(),
                        to,
                        text: text.lines().nth(index).unwrap_or("").trim().to_string(),
                    });
                }
            }
        }
    }
    imports
}

/// `store/outbox.rs` → [store, outbox]; `store/mod.rs` → [store];
/// `lib.rs` and `main.rs` → [].
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

/// The crate paths one line of code names, resolved to absolute module
/// paths: `crate::a::b`, and `super::…` relative to the file's module.
fn paths_in(line: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &line[i..];
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if boundary && (rest.starts_with("crate::") || rest.starts_with("super::")) {
            let (segments, used) = segments(rest);
            i += used.max(1);
            let mut base: Vec<String> = Vec::new();
            let mut iter = segments.into_iter().peekable();
            match iter.peek().map(String::as_str) {
                Some("crate") => {
                    iter.next();
                }
                Some("super") => {
                    base = module.to_vec();
                    while iter.peek().map(String::as_str) == Some("super") {
                        iter.next();
                        base.pop();
                    }
                }
                _ => {}
            }
            let mut tail: Vec<String> = iter.collect();
            if tail.last().is_some_and(|last| last.starts_with('{')) {
                // `crate::a::{b, c::d}`: each item is a path of its own.
                let group = tail.pop().unwrap();
                for item in group.trim_matches(|c| c == '{' || c == '}').split(',') {
                    let item: Vec<String> = item
                        .split("::")
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty() && s != "self")
                        .collect();
                    let mut path = base.clone();
                    path.extend(tail.iter().cloned());
                    path.extend(item);
                    if !path.is_empty() {
                        found.push(path);
                    }
                }
                continue;
            }
            let mut path = base;
            path.extend(tail);
            if !path.is_empty() {
                found.push(path);
            }
            continue;
        }
        i += rest.chars().next().map_or(1, char::len_utf8);
    }
    found
}

/// Splits `crate::a::b::{c, d}` into its segments (up to two after the
/// root are enough to find the unit); returns them and the bytes used.
fn segments(text: &str) -> (Vec<String>, usize) {
    let mut segments = Vec::new();
    let mut rest = text;
    let mut used = 0;
    loop {
        if rest.starts_with('{') {
            let end = rest.find('}').map_or(rest.len(), |e| e + 1);
            segments.push(rest[..end].to_string());
            used += end;
            break;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        segments.push(rest[..end].to_string());
        used += end;
        rest = &rest[end..];
        if let Some(next) = rest.strip_prefix("::") {
            used += 2;
            rest = next;
        } else {
            break;
        }
    }
    (segments, used)
}

/// Every circle among the units: the units of each strongly connected
/// component of more than one, and a path through it back to its start.
fn circles(imports: &[Import]) -> Vec<(Vec<String>, Vec<String>)> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for import in imports {
        graph
            .entry(import.from.as_str())
            .or_default()
            .insert(import.to.as_str());
        graph.entry(import.to.as_str()).or_default();
    }
    let mut circles = Vec::new();
    for component in strongly_connected(&graph) {
        if component.len() < 2 {
            continue;
        }
        let mut members: Vec<String> = component.iter().map(|m| m.to_string()).collect();
        members.sort();
        circles.push((members, circle_through(&graph, &component)));
    }
    circles
}

/// Tarjan's algorithm.
fn strongly_connected<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(node: &'a str, graph: &BTreeMap<&'a str, BTreeSet<&'a str>>, s: &mut State<'a>) {
        s.index.insert(node, s.next);
        s.low.insert(node, s.next);
        s.next += 1;
        s.stack.push(node);
        s.on_stack.insert(node);
        for &next in &graph[node] {
            if !s.index.contains_key(next) {
                visit(next, graph, s);
                let low = s.low[node].min(s.low[next]);
                s.low.insert(node, low);
            } else if s.on_stack.contains(next) {
                let low = s.low[node].min(s.index[next]);
                s.low.insert(node, low);
            }
        }
        if s.low[node] == s.index[node] {
            let mut component = Vec::new();
            while let Some(top) = s.stack.pop() {
                s.on_stack.remove(top);
                component.push(top);
                if top == node {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for &node in graph.keys() {
        if !state.index.contains_key(node) {
            visit(node, graph, &mut state);
        }
    }
    state.out
}

/// A shortest path from the component's first unit back to itself, inside
/// the component (breadth first).
fn circle_through(graph: &BTreeMap<&str, BTreeSet<&str>>, component: &[&str]) -> Vec<String> {
    let members: BTreeSet<&str> = component.iter().copied().collect();
    let start = *members.iter().next().unwrap();
    let mut previous: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &next in &graph[node] {
            if !members.contains(next) {
                continue;
            }
            if next == start {
                let mut path = vec![start.to_string()];
                let mut at = node;
                while at != start {
                    path.push(at.to_string());
                    at = previous[at];
                }
                path.push(start.to_string());
                path.reverse();
                return path;
            }
            if !previous.contains_key(next) {
                previous.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    component.iter().map(|s| s.to_string()).collect()
}

#[test]
fn the_reader_finds_crate_and_super_paths_but_not_comments_or_strings() {
    let module = vec!["rules".to_string(), "lint".to_string()];
    let code = strip_comments_and_strings(
        "use crate::store::Store; // crate::cli\nlet s = \"crate::cli\";\nuse super::super::facts::Facts;\nuse crate::{config, base::clock};\n",
    );
    let found: Vec<Vec<Vec<String>>> = code.lines().map(|l| paths_in(l, &module)).collect();
    assert_eq!(
        found[0],
        vec![vec!["store".to_string(), "Store".to_string()]]
    );
    assert!(found[1].is_empty(), "{:?}", found[1]);
    assert_eq!(
        found[2],
        vec![vec!["facts".to_string(), "Facts".to_string()]]
    );
    assert_eq!(
        found[3],
        vec![
            vec!["config".to_string()],
            vec!["base".to_string(), "clock".to_string()]
        ]
    );
    let stripped =
        strip_test_items("fn a() {}\n#[cfg(test)]\nmod tests {\n use crate::cli;\n}\nfn b() {}\n");
    assert!(!stripped.contains("crate::cli"));
    assert!(stripped.contains("fn b()"));
    assert_eq!(
        unit(&["base".into(), "clock".into(), "Clock".into()]).unwrap(),
        "base::clock"
    );
}
