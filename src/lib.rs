//! devserve: rebuild and swap a server on every save, without ever refusing a connection.
//!
//! Only [`app`] is public: the binaries call `app::main`; everything else is the crate's own, so
//! the compiler reports what nothing uses.
//!
//! The modules form layers. What the layering test enforces: a module uses modules of its own
//! layer or of the layers below it, never one above; no two modules use each other, directly or
//! through others; and inside a module folder no two files do (the few parent–child cycles of
//! re-exports are listed in the test). Same-layer imports exist (`config` uses `cli`):
//!
//! 1. [`app`]: one invocation, from arguments to exit status.
//! 2. [`supervisor`]: the one loop that owns all state and decides (policy), with its effects
//!    behind [`procs`].
//! 3. [`cli`], [`config`]: the settings — every option declared once, parsed and validated into
//!    the [`config::Config`] the supervisor runs with.
//! 4. [`generation`], [`build`], [`procs`], [`accept`]: a set of workers, a build, the process
//!    table, `--accept`'s acceptor (which may start the serving program's processes).
//! 5. [`spawn`], [`sockets`], [`readiness`], [`watch`], [`signals`], [`keys`], [`sentinel`],
//!    [`runtime`], [`control`], [`proxy`], [`ports`], [`upgrade`], [`ca`]: one OS concern each; [`detect`]: what a
//!    folder holds and how devserve would run it (zero-config).
//! 6. [`event`], [`output`]: the messages the threads send the supervisor, and what devserve
//!    prints.

pub(crate) mod accept;
pub mod app;
pub(crate) mod build;
#[cfg(feature = "https")]
pub(crate) mod ca;
pub(crate) mod cli;
pub(crate) mod config;
pub(crate) mod control;
pub(crate) mod detect;
pub(crate) mod event;
pub(crate) mod generation;
pub(crate) mod keys;
pub(crate) mod output;
pub(crate) mod ports;
pub(crate) mod procs;
pub(crate) mod proxy;
pub(crate) mod readiness;
pub(crate) mod runtime;
pub(crate) mod sentinel;
pub(crate) mod signals;
pub(crate) mod sockets;
pub(crate) mod spawn;
pub(crate) mod supervisor;
pub(crate) mod upgrade;
pub(crate) mod watch;

#[cfg(test)]
mod layering {
    /// Each module's layer, as the crate documentation lists them.
    const LAYERS: &[(&str, u8)] = &[
        ("app", 1),
        ("supervisor", 2),
        ("cli", 3),
        ("config", 3),
        ("generation", 4),
        ("build", 4),
        ("procs", 4),
        ("spawn", 5),
        ("sockets", 5),
        ("readiness", 5),
        ("watch", 5),
        ("signals", 5),
        ("keys", 5),
        ("sentinel", 5),
        ("runtime", 5),
        ("control", 5),
        ("proxy", 5),
        ("detect", 5),
        ("ports", 5),
        ("accept", 4),
        ("upgrade", 5),
        ("ca", 5),
        ("event", 6),
        ("output", 6),
    ];

    fn layer(module: &str) -> u8 {
        LAYERS
            .iter()
            .find(|(name, _)| *name == module)
            .map(|(_, layer)| *layer)
            .unwrap_or_else(|| panic!("module {module} has no layer in lib.rs's list"))
    }

    /// The modules a source file names with `crate::`.
    fn imports(text: &str) -> Vec<String> {
        text.match_indices("crate::")
            .map(|(at, _)| {
                text[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .filter(|name| !name.is_empty())
            .collect()
    }

    /// No module imports from a layer above its own, and two modules of one layer never import
    /// each other (no cycles).
    #[test]
    fn no_module_imports_from_above() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut edges = Vec::new();
        for (module, own) in LAYERS {
            let file = src.join(format!("{module}.rs"));
            let dir = src.join(module);
            let mut texts = Vec::new();
            if let Ok(text) = std::fs::read_to_string(&file) {
                texts.push(text);
            }
            let mut pending = vec![dir];
            while let Some(dir) = pending.pop() {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        pending.push(path);
                    } else if path.extension().is_some_and(|e| e == "rs") {
                        texts.push(std::fs::read_to_string(&path).unwrap_or_default());
                    }
                }
            }
            assert!(!texts.is_empty() || *module == "proxy", "no source for {module}");
            for text in texts {
                for used in imports(&text) {
                    if used == *module {
                        continue;
                    }
                    assert!(
                        layer(&used) >= *own,
                        "{module} (layer {own}) imports {used} (layer {})",
                        layer(&used)
                    );
                    edges.push((module.to_string(), used));
                }
            }
        }
        for (from, to) in &edges {
            assert!(!edges.contains(&(to.clone(), from.clone())), "{from} and {to} import each other");
        }
        let groups = cycles(&edges);
        assert!(groups.is_empty(), "modules that use each other through others: {groups:?}");
    }

    // ---- The files of one module folder (src/proxy/, src/supervisor/, src/proxy/tests/, …).
    //
    // Inside a folder, `mod.rs` is a file like the others: a file that uses an item `mod.rs`
    // defines (`super::Config`) uses `mod.rs`, and `mod.rs` naming `state::Shared` uses
    // `state.rs`. A subfolder (`tests/`) counts as one file. Only paths written out are seen:
    // `super::`, `self::`, `crate::folder::…`, and a child module's name in its parent (`use
    // trigger::Trigger;`), in `use` trees and in code, outside comments and strings; a method
    // called on a type another file defines is not.

    /// Cycles between the files of a folder that were there when this check came and are not
    /// undone yet: (folder under `src/`, files that use each other, directly or through others).
    /// Each group of files found using each other must fit inside one entry of its folder, so a
    /// new cycle, or one more file in an old one, fails. Take an entry out once its cycle is
    /// undone. src/proxy/ has none, and must keep none.
    const ALLOWED_CYCLES: &[(&str, &[&str])] = &[
        // mod.rs re-exports report's `Report`; report.rs and status.rs call mod.rs's `duration`.
        ("output", &["mod.rs", "report.rs", "status.rs"]),
        // mod.rs holds `Supervisor` and its state parts and names `front::`, `once::`, `service::`,
        // `per_connection::`, `upgrades::`; those files take `Supervisor`, `Outcome`, `BuildRun`, …
        // from mod.rs.
        ("supervisor", &["front.rs", "mod.rs", "once.rs", "per_connection.rs", "service.rs", "upgrades.rs"]),
        // mod.rs merges each `[services.NAME]` through services.rs, which merges the table's
        // keys with mod.rs's `Loader`.
        ("config", &["mod.rs", "services.rs"]),
        // mod.rs re-exports filter's `Filter`; filter.rs returns mod.rs's `WatchError`.
        ("watch", &["filter.rs", "mod.rs"]),
    ];

    /// Folders whose `mod.rs` lists its files under `# Layout` (lines `//! - `name``), each using
    /// only files listed after it: the list must name every file, in an order the uses follow.
    const ORDERED_LAYOUTS: &[&str] = &["proxy"];

    /// No two files of a module folder use each other, directly or through other files of the
    /// folder (but the cycles of [`ALLOWED_CYCLES`]); a folder with a `# Layout` list keeps to it.
    #[test]
    fn no_two_files_of_a_folder_use_each_other() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let files = module_files(&src);
        let mut folders: Vec<Vec<String>> = files
            .iter()
            .filter(|(_, module)| module.len() > 1)
            .map(|(_, m)| m[..m.len() - 1].to_vec())
            .collect();
        folders.sort();
        folders.dedup();
        assert!(folders.contains(&vec!["proxy".to_string()]), "src/proxy/ not found: {folders:?}");
        let mut problems = Vec::new();
        for folder in &folders {
            let name = folder.join("/");
            let (nodes, edges) = folder_graph(&files, folder);
            let pairs: Vec<(String, String)> =
                edges.iter().map(|(from, to, _)| (from.clone(), to.clone())).collect();
            for group in cycles(&pairs) {
                let allowed = ALLOWED_CYCLES.iter().any(|(dir, cycle)| {
                    *dir == name && group.iter().all(|file| cycle.contains(&file.as_str()))
                });
                if !allowed {
                    let within: Vec<String> = edges
                        .iter()
                        .filter(|(from, to, _)| group.contains(from) && group.contains(to))
                        .map(|(from, to, seen)| format!("{from} → {to} ({seen})"))
                        .collect();
                    problems.push(format!(
                        "src/{name}/: {} use each other: {}\n  (every use among them: {})",
                        group.join(", "),
                        cycle_path(&group, &edges),
                        within.join("; ")
                    ));
                }
            }
            if ORDERED_LAYOUTS.contains(&name.as_str()) {
                let doc = std::fs::read_to_string(src.join(&name).join("mod.rs")).unwrap_or_default();
                let order = layout_order(&doc);
                let mut listed = order.clone();
                listed.sort();
                if listed != nodes {
                    problems.push(format!(
                        "src/{name}/mod.rs's `# Layout` lists {order:?}, the folder has {nodes:?}"
                    ));
                }
                let at = |file: &str| order.iter().position(|listed| listed == file);
                for (from, to, seen) in &edges {
                    if let (Some(from_at), Some(to_at)) = (at(from), at(to))
                        && from_at > to_at
                    {
                        problems.push(format!(
                            "src/{name}/: {from} uses {to} ({seen}), which `# Layout` lists before it"
                        ));
                    }
                }
            }
        }
        assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    }

    /// Every `.rs` file of the library but its root, with its module path (`proxy/tests/mod.rs` is
    /// `["proxy", "tests"]`).
    fn module_files(src: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<String>)> {
        let mut files = Vec::new();
        let mut pending = vec![src.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                let relative = path.strip_prefix(src).expect("under src").to_path_buf();
                if path.is_dir() {
                    if relative != std::path::Path::new("bin") {
                        pending.push(path);
                    }
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") || dir == src && path.ends_with("main.rs") {
                    continue;
                }
                let mut module: Vec<String> = relative
                    .with_extension("")
                    .iter()
                    .map(|part| part.to_string_lossy().into_owned())
                    .collect();
                if module.last().is_some_and(|last| last == "mod" || last == "lib") {
                    module.pop();
                }
                if !module.is_empty() {
                    files.push((path, module));
                }
            }
        }
        files.sort();
        files
    }

    /// The files of `folder` (`mod.rs`, `name.rs`, `sub/`), sorted, and which uses which:
    /// (user, used, the path that says so).
    fn folder_graph(
        files: &[(std::path::PathBuf, Vec<String>)],
        folder: &[String],
    ) -> (Vec<String>, Vec<(String, String, String)>) {
        let depth = folder.len();
        // A child module `name` is `name.rs` when that file is in the folder, else the subfolder.
        let node = |module: &[String]| -> String {
            if module.len() <= depth {
                return "mod.rs".to_string();
            }
            let name = &module[depth];
            let file = files.iter().any(|(path, m)| {
                m.len() == depth + 1 && m[..] == module[..=depth] && !path.ends_with("mod.rs")
            });
            if file { format!("{name}.rs") } else { format!("{name}/") }
        };
        let is_child = |name: &str| {
            files.iter().any(|(_, m)| m.len() > depth && m[..depth] == *folder && m[depth] == name)
        };
        let mut nodes = Vec::new();
        let mut edges: Vec<(String, String, String)> = Vec::new();
        for (path, module) in files.iter().filter(|(_, m)| m.len() >= depth && m[..depth] == *folder) {
            let from = node(module);
            if !nodes.contains(&from) {
                nodes.push(from.clone());
            }
            let text = std::fs::read_to_string(path).unwrap_or_default();
            for (used, written) in module_uses(&text, module) {
                if used.len() < depth || used[..depth] != *folder {
                    continue;
                }
                let to = match used.get(depth) {
                    Some(name) if is_child(name) => node(&used),
                    _ => "mod.rs".to_string(),
                };
                if to != from && !edges.iter().any(|(f, t, _)| *f == from && *t == to) {
                    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    edges.push((from.clone(), to, format!("{file}: {written}")));
                }
            }
        }
        nodes.sort();
        (nodes, edges)
    }

    /// The groups of names that reach each other along `edges` (each sorted, with more than one
    /// name): empty when the graph has no cycle.
    fn cycles(edges: &[(String, String)]) -> Vec<Vec<String>> {
        let reach = |start: &String| {
            let mut seen = vec![start.clone()];
            let mut pending = vec![start.clone()];
            while let Some(at) = pending.pop() {
                for (_, to) in edges.iter().filter(|(from, _)| *from == at) {
                    if !seen.contains(to) {
                        seen.push(to.clone());
                        pending.push(to.clone());
                    }
                }
            }
            seen
        };
        let mut groups: Vec<Vec<String>> = Vec::new();
        for (start, _) in edges {
            if groups.iter().any(|group| group.contains(start)) {
                continue;
            }
            let mut group: Vec<String> =
                reach(start).into_iter().filter(|other| reach(other).contains(start)).collect();
            if group.len() > 1 {
                group.sort();
                groups.push(group);
            }
        }
        groups
    }

    /// One way round a group of [`cycles`], each step with the path that makes it: `a.rs → b.rs
    /// (a.rs: super::b::X) → a.rs (b.rs: super::Y)`.
    fn cycle_path(group: &[String], edges: &[(String, String, String)]) -> String {
        let start = &group[0];
        // Breadth first from `start` inside the group: each file reached, and the edge it was
        // reached by, until an edge leads back to `start`.
        let mut reached: Vec<(&String, Option<usize>)> = vec![(start, None)];
        let mut at = 0;
        while at < reached.len() {
            let here = reached[at].0;
            for (index, (from, to, _)) in edges.iter().enumerate() {
                if from != here || !group.contains(to) {
                    continue;
                }
                if to == start {
                    let mut steps = vec![index];
                    let mut back = at;
                    while let Some(edge) = reached[back].1 {
                        steps.push(edge);
                        back = reached.iter().position(|(name, _)| **name == edges[edge].0).unwrap_or(0);
                    }
                    let mut text = start.clone();
                    for step in steps.into_iter().rev() {
                        let (_, to, seen) = &edges[step];
                        text.push_str(&format!(" → {to} ({seen})"));
                    }
                    return text;
                }
                if !reached.iter().any(|(name, _)| *name == to) {
                    reached.push((to, Some(index)));
                }
            }
            at += 1;
        }
        group.join(" → ")
    }

    /// The files a `# Layout` section lists, in order: the first backquoted word of each line
    /// `//! - `name` …`.
    fn layout_order(doc: &str) -> Vec<String> {
        doc.lines()
            .skip_while(|line| line.trim() != "//! # Layout")
            .skip(1)
            .take_while(|line| !line.starts_with("//! #"))
            .filter_map(|line| line.strip_prefix("//! - `"))
            .filter_map(|item| item.split('`').next())
            .map(str::to_string)
            .collect()
    }

    /// The module paths a source file names, resolved from the crate root (`super::state::Shared`
    /// in `proxy/http.rs` is `["proxy", "state", "Shared"]`), each with the path as written.
    /// `module` is the file's own module path; inline `mod name { … }` blocks are followed.
    fn module_uses(text: &str, module: &[String]) -> Vec<(Vec<String>, String)> {
        let tokens = tokens(&code_only(text));
        // The module each open inline `mod` block is, and the brace depth it closes back to.
        let mut scopes: Vec<(Vec<String>, usize)> = vec![(module.to_vec(), 0)];
        let mut depth = 0;
        let mut declared: Vec<(Vec<String>, String)> = Vec::new();
        let mut found: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let scope = scopes.last().map(|(scope, _)| scope.clone()).unwrap_or_default();
            match &tokens[i] {
                Token::Punct('{') => depth += 1,
                Token::Punct('}') => {
                    depth -= 1;
                    if scopes.len() > 1 && scopes.last().is_some_and(|(_, closes)| *closes == depth) {
                        scopes.pop();
                    }
                }
                Token::Ident(word) if word == "mod" => {
                    if let Some(Token::Ident(name)) = tokens.get(i + 1) {
                        match tokens.get(i + 2) {
                            Some(Token::Punct('{')) => {
                                scopes.push(([scope, vec![name.clone()]].concat(), depth));
                                depth += 1;
                                i += 2;
                            }
                            Some(Token::Punct(';')) => declared.push((scope, name.clone())),
                            _ => {}
                        }
                    }
                }
                // A visibility (`pub(super)`, `pub(in crate::x)`) uses nothing.
                Token::Ident(word) if word == "pub" && tokens.get(i + 1) == Some(&Token::Punct('(')) => {
                    while i < tokens.len() && tokens[i] != Token::Punct(')') {
                        i += 1;
                    }
                }
                Token::Ident(_) if i == 0 || tokens[i - 1] != Token::PathSep => {
                    let (paths, next) = use_tree(&tokens, i);
                    found.extend(paths.into_iter().map(|path| (scope.clone(), path)));
                    i = next;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        found
            .into_iter()
            .filter_map(|(scope, path)| {
                let written = path.join("::");
                let resolved = match path[0].as_str() {
                    "crate" => path[1..].to_vec(),
                    "self" | "super" => {
                        // `super::super::x`, `self::super::x`: up one module per `super`.
                        let lead = path.iter().take_while(|part| *part == "self" || *part == "super").count();
                        let up = path[..lead].iter().filter(|part| *part == "super").count();
                        let base = scope.get(..scope.len().checked_sub(up)?)?.to_vec();
                        [base, path[lead..].to_vec()].concat()
                    }
                    name if path.len() > 1 && declared.contains(&(scope.clone(), name.to_string())) => {
                        [scope, path].concat()
                    }
                    _ => return None,
                };
                Some((resolved, written))
            })
            .collect()
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Token {
        Ident(String),
        /// `::`
        PathSep,
        Punct(char),
    }

    fn tokens(code: &str) -> Vec<Token> {
        let chars: Vec<char> = code.chars().collect();
        let word = |c: char| c.is_alphanumeric() || c == '_';
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if word(c) {
                let start = i;
                while i < chars.len() && word(chars[i]) {
                    i += 1;
                }
                // Numbers (`0x1f`, `2_u8`) are no names.
                if !c.is_ascii_digit() {
                    tokens.push(Token::Ident(chars[start..i].iter().collect()));
                }
                continue;
            }
            if c == ':' && chars.get(i + 1) == Some(&':') {
                tokens.push(Token::PathSep);
                i += 2;
                continue;
            }
            if !c.is_whitespace() {
                tokens.push(Token::Punct(c));
            }
            i += 1;
        }
        tokens
    }

    /// The paths a path or `use` tree starting at `tokens[start]` names (`super::{a, b::{C, D}}`
    /// is `super::a`, `super::b::C`, `super::b::D`; `x::{self}` is `x`), and where it ends.
    fn use_tree(tokens: &[Token], start: usize) -> (Vec<Vec<String>>, usize) {
        let mut prefix = Vec::new();
        let mut i = start;
        loop {
            match tokens.get(i) {
                Some(Token::Ident(name)) => prefix.push(name.clone()),
                Some(Token::Punct('*')) => {
                    prefix.push("*".to_string());
                    return (vec![prefix], i + 1);
                }
                Some(Token::Punct('{')) if !prefix.is_empty() => {
                    let mut paths = Vec::new();
                    i += 1;
                    while i < tokens.len() && tokens[i] != Token::Punct('}') {
                        if tokens[i] == Token::Punct(',') {
                            i += 1;
                            continue;
                        }
                        let (inner, next) = use_tree(tokens, i);
                        for path in inner {
                            let own = path.len() == 1 && path[0] == "self";
                            paths.push(if own { prefix.clone() } else { [prefix.clone(), path].concat() });
                        }
                        i = next.max(i + 1);
                    }
                    return (paths, i + 1);
                }
                _ => return (if prefix.is_empty() { Vec::new() } else { vec![prefix] }, i.max(start + 1)),
            }
            i += 1;
            if tokens.get(i) == Some(&Token::PathSep) {
                i += 1;
                continue;
            }
            // `use a::b as c;`: `c` is a new name, not a path (but `<T as super::Trait>` names one).
            if matches!(tokens.get(i), Some(Token::Ident(word)) if word == "as") {
                i += if tokens.get(i + 2) == Some(&Token::PathSep) { 1 } else { 2 };
            }
            return (vec![prefix], i);
        }
    }

    /// `text` without its comments, strings and character literals, which name nothing (newlines
    /// kept).
    fn code_only(text: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        let word = |c: char| c.is_alphanumeric() || c == '_';
        let mut code = String::with_capacity(text.len());
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            if c == '/' && next == Some('/') {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            if c == '/' && next == Some('*') {
                let mut open = 0;
                while i < chars.len() {
                    if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                        open += 1;
                        i += 2;
                    } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                        open -= 1;
                        i += 2;
                        if open == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                code.push(' ');
                continue;
            }
            // A raw string: `r"…"`, `r#"…"#` (after a `b` or `c` too), not a name ending in `r`.
            let prefix_ok = i == 0
                || !word(chars[i - 1])
                || (matches!(chars[i - 1], 'b' | 'c') && (i < 2 || !word(chars[i - 2])));
            if c == 'r' && prefix_ok {
                let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
                if chars.get(i + 1 + hashes) == Some(&'"') {
                    let close: Vec<char> =
                        std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
                    i += 2 + hashes;
                    while i < chars.len() && !chars[i..].starts_with(&close) {
                        i += 1;
                    }
                    i += close.len();
                    code.push_str("\"\"");
                    continue;
                }
            }
            if c == '"' {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                code.push_str("\"\"");
                continue;
            }
            if c == '\'' {
                if next == Some('\\') {
                    // `'\n'`, `'\''`, `'\u{7f}'`: past the escaped character, to the closing quote.
                    i += 3;
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                    continue;
                }
                if chars.get(i + 2) == Some(&'\'') {
                    i += 3;
                    continue;
                }
                // A lifetime or a label.
            }
            code.push(c);
            i += 1;
        }
        code
    }

    /// The reader of paths, on every form it must read, and on what it must not.
    #[test]
    fn paths_are_read_in_use_trees_and_code_but_not_in_comments_or_strings() {
        let text = r##"
            //! Not a use: super::doc_comment, [`super::link`].
            use super::{alpha, beta::Gamma, delta::{self, Epsilon as E}};
            use self::state::Shared;
            use self::super::rho;
            use crate::proxy::zeta::Eta;
            use trigger::Trigger;
            pub(super) use super::theta;
            mod trigger;
            pub(crate) fn f() -> super::iota::Kappa<'static> {
                let quote = '"'; let brace = '{'; let s = "super::in_string"; let r = r#"super::raw"#;
                /* super::block /* nested */ super::still_block */
                let x = ::std::mem::take(&mut 1); let _ = <u8 as super::lambda::Mu>::f;
                super::nu::xi(quote, brace, s, r, x)
            }
            #[cfg(test)]
            mod unit {
                use super::*;
                use super::super::omicron;
                fn g() { super::inner(); }
            }
            fn after() { super::pi::Rho; }
        "##;
        let module = vec!["proxy".to_string(), "http".to_string()];
        let found: Vec<String> =
            module_uses(text, &module).into_iter().map(|(path, _)| path.join("::")).collect();
        let expected = [
            "proxy::alpha",
            "proxy::beta::Gamma",
            "proxy::delta",
            "proxy::delta::Epsilon",
            "proxy::http::state::Shared",
            "proxy::rho",
            "proxy::zeta::Eta",
            "proxy::http::trigger::Trigger",
            "proxy::theta",
            "proxy::iota::Kappa",
            "proxy::lambda::Mu",
            "proxy::nu::xi",
            "proxy::http::*",
            "proxy::omicron",
            "proxy::http::inner",
            "proxy::pi::Rho",
        ];
        assert_eq!(found, expected);
    }
}
