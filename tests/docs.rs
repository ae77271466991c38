//! The documentation holds together: README.md, tests/README.md and the book under docs/ (an mdBook,
//! `docs/book.toml`, chapters in `docs/src/`). Every relative Markdown link leads to a file that
//! exists, and a link to a heading of a Markdown file names a heading it has. Every chapter file is
//! listed in `docs/src/SUMMARY.md` and every entry there exists. README.md stays short enough to be
//! read to the end (at most 250 lines). These tests read files only: no build, no process.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// README.md's limit: what goes past it belongs in the book.
const README_MAX_LINES: usize = 250;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every file under `dir`, recursively, sorted. `docs/book` (the rendered book, not committed) is
/// left out.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                if path != repo().join("docs/book") {
                    pending.push(path);
                }
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn is_markdown(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "md")
}

/// The Markdown files whose links are checked: README.md, tests/README.md and every Markdown file
/// under docs/.
fn documents() -> Vec<PathBuf> {
    let mut documents = vec![repo().join("README.md"), repo().join("tests/README.md")];
    documents.extend(files_under(&repo().join("docs")).into_iter().filter(|p| is_markdown(p)));
    documents
}

/// The text of a Markdown document that is prose: fenced code blocks become empty lines and inline
/// code spans (a run of N backticks up to the next run of exactly N) become spaces, so that
/// `[alias]` in a TOML block or `a[i](x)` in code is never taken for a link.
fn prose(markdown: &str) -> String {
    let mut text = String::new();
    let mut fence: Option<String> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        let ticks: String = trimmed.chars().take_while(|&c| c == '`').collect();
        match &fence {
            Some(open) if ticks.len() >= open.len() && trimmed.trim_end() == ticks => fence = None,
            Some(_) => {}
            None if ticks.len() >= 3 => fence = Some(ticks),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let run = rest[start..].chars().take_while(|&c| c == '`').count();
        let after = &rest[start + run..];
        // The closing run: exactly `run` backticks, not part of a longer run.
        let mut search = 0;
        let close = loop {
            let Some(at) = after[search..].find('`') else { break None };
            let at = search + at;
            let len = after[at..].chars().take_while(|&c| c == '`').count();
            if len == run {
                break Some(at);
            }
            search = at + len;
        };
        match close {
            Some(at) => {
                out.extend(std::iter::repeat_n(' ', run + at + run));
                rest = &after[at + run..];
            }
            None => {
                // No closing run: the backticks are literal text.
                out.push_str(&rest[start..start + run]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The targets of the inline links `[text](target)` in a document's prose, in order. A target ends
/// at its closing parenthesis or at a space (before an optional title).
fn link_targets(markdown: &str) -> Vec<String> {
    let prose = prose(markdown);
    let mut targets = Vec::new();
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let end = after.find([')', ' ', '\n']).unwrap_or(after.len());
        if after[end..].starts_with([')', ' ']) && end > 0 {
            targets.push(after[..end].to_owned());
        }
        rest = after;
    }
    targets
}

/// A link target that names something on this disk: not a web address, not a mail address and not
/// an anchor in the same page.
fn is_relative(target: &str) -> bool {
    !(target.starts_with("http://")
        || target.starts_with("https://")
        || target.starts_with("mailto:")
        || target.starts_with('#'))
}

/// The anchors of a Markdown document's headings, as GitHub and mdBook make them: lower case,
/// letters, digits, `-` and `_` kept, each space a `-`, everything else dropped; a repeated heading
/// gets `-1`, `-2`, ….
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if fenced || !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug: String = line[hashes..]
            .trim()
            .chars()
            .filter_map(|c| match c {
                c if c.is_alphanumeric() || c == '-' || c == '_' => {
                    Some(c.to_lowercase().next().unwrap_or(c))
                }
                ' ' => Some('-'),
                _ => None,
            })
            .collect();
        let mut unique = slug.clone();
        let mut n = 0;
        while anchors.contains(&unique) {
            n += 1;
            unique = format!("{slug}-{n}");
        }
        anchors.insert(unique);
    }
    anchors
}

/// The problems with one document's relative links: a target that does not exist, or an anchor
/// that names no heading of the Markdown file it points into.
fn link_problems(document: &Path) -> Vec<String> {
    let dir = document.parent().expect("a document is in a folder");
    let name = document.strip_prefix(repo()).unwrap_or(document).display().to_string();
    let mut problems = Vec::new();
    for target in link_targets(&read(document)).into_iter().filter(|t| is_relative(t)) {
        let (path, anchor) = match target.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (target.as_str(), None),
        };
        let resolved = dir.join(path);
        if !resolved.exists() {
            problems.push(format!("{name}: link to {target}: {} does not exist", resolved.display()));
            continue;
        }
        if let Some(anchor) = anchor
            && is_markdown(&resolved)
            && !anchors(&read(&resolved)).contains(anchor)
        {
            problems.push(format!("{name}: link to {target}: {path} has no heading #{anchor}"));
        }
    }
    problems
}

#[test]
fn every_relative_link_leads_to_a_file_that_exists() {
    let documents = documents();
    assert!(
        documents.iter().any(|d| d.ends_with("docs/src/SUMMARY.md")),
        "the book's documents were not found under docs/"
    );
    let problems: Vec<String> = documents.iter().flat_map(|d| link_problems(d)).collect();
    assert!(problems.is_empty(), "broken links:\n{}", problems.join("\n"));
}

/// The link finder is what makes the test above able to fail: it must see links, and not see the
/// bracket-and-parenthesis pairs of code.
#[test]
fn the_link_finder_sees_links_and_skips_code() {
    let text = "See [the book](docs/src/SUMMARY.md) and [a heading](front-doors.md#restart-mode), \
                [a page](https://example.org/) or [here](#install).\n\
                Code: `a[0](1)` and ``b[1](2) ` c``.\n\
                ```rust\nlet x = v[i](y);\n```\n\
                A link whose text spans [two\nlines](two-lines.md \"title\").\n";
    assert_eq!(
        link_targets(text),
        [
            "docs/src/SUMMARY.md",
            "front-doors.md#restart-mode",
            "https://example.org/",
            "#install",
            "two-lines.md"
        ]
    );
    let relative: Vec<String> = link_targets(text).into_iter().filter(|t| is_relative(t)).collect();
    assert_eq!(relative, ["docs/src/SUMMARY.md", "front-doors.md#restart-mode", "two-lines.md"]);
    let readme_links = link_targets(&read(&repo().join("README.md")));
    assert!(
        readme_links.iter().filter(|t| is_relative(t)).count() >= 10,
        "README.md links: {readme_links:?}"
    );
    assert_eq!(
        anchors("# The front door: `--proxy`\n```sh\n# not a heading\n```\n## Exit codes\n## Exit codes\n"),
        BTreeSet::from([
            "the-front-door---proxy".to_owned(),
            "exit-codes".to_owned(),
            "exit-codes-1".to_owned()
        ])
    );
}

#[test]
fn every_chapter_is_in_the_summary_and_every_entry_exists() {
    let src = repo().join("docs/src");
    let summary_path = src.join("SUMMARY.md");
    let summary = read(&summary_path);
    let listed: BTreeSet<PathBuf> = link_targets(&summary)
        .into_iter()
        .filter(|t| is_relative(t))
        .map(|t| src.join(t.split('#').next().unwrap_or_default()))
        .collect();
    assert!(!listed.is_empty(), "docs/src/SUMMARY.md lists no chapter");
    let missing: Vec<String> =
        listed.iter().filter(|p| !p.is_file()).map(|p| p.display().to_string()).collect();
    assert!(missing.is_empty(), "SUMMARY.md lists chapters that do not exist: {missing:?}");
    let chapters: BTreeSet<PathBuf> =
        files_under(&src).into_iter().filter(|p| is_markdown(p) && *p != summary_path).collect();
    let unlisted: Vec<String> = chapters.difference(&listed).map(|p| p.display().to_string()).collect();
    assert!(unlisted.is_empty(), "chapter files not listed in docs/src/SUMMARY.md: {unlisted:?}");

    let book = read(&repo().join("docs/book.toml"));
    assert!(book.contains("title = \"devserve\""), "docs/book.toml's title:\n{book}");
    assert!(book.contains("src = \"src\""), "docs/book.toml's src:\n{book}");
}

#[test]
fn the_readme_is_short() {
    let lines = read(&repo().join("README.md")).lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move detail into the book"
    );
}

/// Sentences a newcomer met that had stopped being true: the proxy exists and keeps the
/// zero-failed-request promise, and the browser features are here.
#[test]
fn no_stale_sentences_about_the_front_door() {
    let stale =
        ["is planned", "until then", "the browser features to come", "the zero-refusal guarantee needs"];
    for document in documents() {
        let text = read(&document).to_lowercase();
        for sentence in stale {
            assert!(!text.contains(sentence), "{} still says {sentence:?}", document.display());
        }
    }
}
