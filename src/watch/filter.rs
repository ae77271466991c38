//! Which paths count as a change.
//!
//! A path is dropped when any of these says so, in this order:
//! 0. it is one of devserve's own files (its runtime directory, pidfile, socket files) or lies
//!    inside one: whatever the user watches, devserve never triggers itself;
//! 1. it lies outside every watched root;
//! 2. a component is a VCS folder (`.git`, `.hg`, `.svn`, `.bzr`, `_darcs`, `.jj`, `.pijul`):
//!    always, whatever else is configured;
//! 3. a component is a well-known output folder (`target`, `node_modules`, `__pycache__`, `.venv`,
//!    `.mypy_cache`, `.pytest_cache`), or a directory tagged with `CACHEDIR.TAG` (cargo and other
//!    tools tag their output so): a build that writes into the watched tree must not trigger itself;
//! 4. the file name is an editor's swap, backup or lock file (`*.swp`, `*~`, `.#*`, `#*#`, `4913`, …),
//!    so an atomic save counts once, as a change to the real file;
//! 5. a `--ignore` glob matches the path relative to its root;
//! 6. `.gitignore`, `.ignore` or `.git/info/exclude` rules ignore it (unless `--no-vcs-ignore`),
//!    the deepest file deciding, as git does;
//! 7. with `--exts`, a file whose extension is not listed.

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use ignore::gitignore::{Gitignore, GitignoreBuilder};

const VCS_DIRS: &[&str] = &[".git", ".hg", ".svn", ".bzr", "_darcs", ".jj", ".pijul"];
const OUTPUT_DIRS: &[&str] =
    &["target", "node_modules", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache"];
const EDITOR_FILES: &[&str] = &[
    "*.swp",
    "*.swo",
    "*.swx",
    "*.swpx",
    "*~",
    ".#*",
    "#*#",
    "4913",
    "*.kate-swp",
    ".DS_Store",
    "*.py[co]",
    "*.crswap",
    "*.tmp",
];
const IGNORE_FILES: &[&str] = &[".gitignore", ".ignore"];

/// The rules of what counts; built once, updated when an ignore file changes.
#[derive(Debug)]
pub struct Filter {
    roots: Vec<Root>,
    /// devserve's own files and folders (rule 0).
    own: Vec<PathBuf>,
    editor_files: GlobSet,
    user_globs: GlobSet,
    exts: Vec<String>,
    vcs_ignore: bool,
    /// Ignore files in effect, lowest precedence first.
    ignore_files: Vec<IgnoreFile>,
}

/// One ignore file and its rules, rooted at the directory they apply to.
#[derive(Debug)]
struct IgnoreFile {
    file: PathBuf,
    matcher: Gitignore,
}

impl IgnoreFile {
    /// Deeper directories win; in one directory `.ignore` beats `.gitignore` beats
    /// `.git/info/exclude` (ripgrep's and git's order).
    fn precedence(&self) -> (usize, u8) {
        let kind = match self.file.file_name().and_then(OsStr::to_str) {
            Some(".ignore") => 2,
            Some(".gitignore") => 1,
            _ => 0,
        };
        (self.matcher.path().components().count(), kind)
    }
}

/// A watched root: a directory, or a single file (watched through its directory).
#[derive(Debug, Clone)]
pub struct Root {
    pub dir: PathBuf,
    pub only: Option<PathBuf>,
}

impl Filter {
    /// `roots` must be canonical paths that exist; `touch` are `--touch-reload` files (absolute,
    /// maybe not there yet); `globs` are `--ignore` values.
    pub fn new(
        roots: &[PathBuf],
        touch: &[PathBuf],
        globs: &[String],
        exts: &[String],
        vcs_ignore: bool,
    ) -> Result<Filter, super::WatchError> {
        let roots = roots.iter().map(|p| to_root(p)).chain(touch.iter().map(|p| file_root(p))).collect();
        let mut filter = Filter {
            roots,
            own: Vec::new(),
            editor_files: glob_set(EDITOR_FILES.iter().copied())?,
            user_globs: glob_set(globs.iter().map(String::as_str))?,
            exts: exts
                .iter()
                .map(|e| e.trim().trim_start_matches('.').to_owned())
                .filter(|e| !e.is_empty())
                .collect(),
            vcs_ignore,
            ignore_files: Vec::new(),
        };
        if vcs_ignore {
            filter.load_ancestor_ignore_files();
        }
        Ok(filter)
    }

    /// devserve's own paths, never changes (rule 0).
    pub fn with_own_files(mut self, own: Vec<PathBuf>) -> Filter {
        self.own = own;
        self
    }

    pub fn roots(&self) -> &[Root] {
        &self.roots
    }

    fn is_own(&self, path: &Path) -> bool {
        self.own.iter().any(|own| path.starts_with(own))
    }

    /// Whether a change to `path` should trigger a build. A file named as a root itself
    /// (`--watch FILE`, `--touch-reload FILE`) always counts: the user asked for it by name.
    #[cfg(test)]
    pub fn counts(&self, path: &Path) -> bool {
        self.counts_entry(path, path.is_dir())
    }

    /// [`Filter::counts`] for a path whose type the caller already knows.
    pub fn counts_entry(&self, path: &Path, is_dir: bool) -> bool {
        if self.roots.iter().any(|root| root.only.as_deref() == Some(path)) {
            return true;
        }
        if self.is_ignored(path, is_dir) {
            return false;
        }
        is_dir || self.exts.is_empty() || self.has_listed_extension(path)
    }

    /// Whether `path` is excluded by the rules 1–6 (for event paths: every ancestor directory
    /// is checked for a `CACHEDIR.TAG`).
    pub fn is_ignored(&self, path: &Path, is_dir: bool) -> bool {
        if self.is_own(path) {
            return true;
        }
        let Some(root) = self.root_of(path) else { return true };
        let relative = path.strip_prefix(&root.dir).unwrap_or(path);
        self.ignored_by_rules(path, relative, is_dir) || in_tagged_cache_dir(&root.dir, relative)
    }

    /// The same for an entry met while walking down from a root, whose ancestors were kept
    /// already: only a directory's own `CACHEDIR.TAG` is left to check.
    pub fn is_ignored_in_walk(&self, path: &Path, is_dir: bool) -> bool {
        if self.is_own(path) {
            return true;
        }
        let Some(root) = self.root_of(path) else { return true };
        let relative = path.strip_prefix(&root.dir).unwrap_or(path);
        self.ignored_by_rules(path, relative, is_dir) || (is_dir && path.join("CACHEDIR.TAG").is_file())
    }

    /// Rules 2–6: VCS and output folders, editor files, `--ignore` globs, ignore files.
    fn ignored_by_rules(&self, path: &Path, relative: &Path, is_dir: bool) -> bool {
        let mut names = relative.components().filter_map(|c| match c {
            Component::Normal(name) => name.to_str(),
            _ => None,
        });
        names.any(|n| VCS_DIRS.contains(&n) || OUTPUT_DIRS.contains(&n))
            || path.file_name().is_some_and(|name| self.editor_files.is_match(name))
            || self.user_globs.is_match(relative)
            || (self.vcs_ignore && self.ignored_by_files(path, is_dir))
    }

    /// Loads (or reloads, or forgets if deleted) an ignore file met during a walk or changed on disk.
    pub fn load_ignore_file(&mut self, file: &Path) {
        if !self.vcs_ignore {
            return;
        }
        self.ignore_files.retain(|known| known.file != file);
        let root = if file.ends_with(".git/info/exclude") { file.ancestors().nth(3) } else { file.parent() };
        let Some(root) = root.filter(|_| file.is_file()) else {
            return;
        };
        let mut builder = GitignoreBuilder::new(root);
        if let Some(e) = builder.add(file) {
            tracing::warn!("{}: {e}", file.display());
        }
        match builder.build() {
            Ok(matcher) => self.ignore_files.push(IgnoreFile { file: file.to_path_buf(), matcher }),
            Err(e) => tracing::warn!("{}: {e}", file.display()),
        }
        self.ignore_files.sort_by_key(IgnoreFile::precedence);
    }

    /// Whether `path` is one of the files whose rules this filter uses.
    pub fn is_ignore_file(path: &Path) -> bool {
        path.file_name().and_then(OsStr::to_str).is_some_and(|n| IGNORE_FILES.contains(&n))
    }

    fn root_of(&self, path: &Path) -> Option<&Root> {
        self.roots.iter().find(|root| match &root.only {
            Some(file) => path == file,
            None => path.starts_with(&root.dir),
        })
    }

    fn has_listed_extension(&self, path: &Path) -> bool {
        path.extension().and_then(OsStr::to_str).is_some_and(|ext| self.exts.iter().any(|e| e == ext))
    }

    /// git's precedence: the deepest ignore file with an opinion decides.
    fn ignored_by_files(&self, path: &Path, is_dir: bool) -> bool {
        for IgnoreFile { matcher, .. } in self.ignore_files.iter().rev() {
            if !path.starts_with(matcher.path()) {
                continue;
            }
            let verdict = matcher.matched_path_or_any_parents(path, is_dir);
            if verdict.is_ignore() {
                return true;
            }
            if verdict.is_whitelist() {
                return false;
            }
        }
        false
    }

    /// Ignore files above the roots, up to the repository's top (the folder holding `.git`),
    /// plus that repository's `.git/info/exclude`. Files inside the roots come from the walk.
    fn load_ancestor_ignore_files(&mut self) {
        let dirs: Vec<PathBuf> = self.roots.iter().map(|r| r.dir.clone()).collect();
        for dir in dirs {
            for ancestor in dir.ancestors() {
                for name in IGNORE_FILES {
                    self.load_ignore_file(&ancestor.join(name));
                }
                if ancestor.join(".git").exists() {
                    self.load_ignore_file(&ancestor.join(".git/info/exclude"));
                    break;
                }
            }
        }
    }
}

fn to_root(path: &Path) -> Root {
    if path.is_file() { file_root(path) } else { Root { dir: path.to_path_buf(), only: None } }
}

fn file_root(path: &Path) -> Root {
    let dir = path.parent().map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    Root { dir, only: Some(path.to_path_buf()) }
}

fn glob_set<'a>(globs: impl Iterator<Item = &'a str>) -> Result<GlobSet, super::WatchError> {
    let bad = |glob: &str, reason: String| super::WatchError::Glob { glob: glob.to_owned(), reason };
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        builder.add(Glob::new(glob).map_err(|e| bad(glob, e.kind().to_string()))?);
    }
    builder.build().map_err(|e| bad("(all)", e.to_string()))
}

/// True when a directory between the root and the path holds a `CACHEDIR.TAG`.
fn in_tagged_cache_dir(root: &Path, relative: &Path) -> bool {
    let mut dir = root.to_path_buf();
    for component in relative.parent().into_iter().flat_map(Path::components) {
        dir.push(component);
        if dir.join("CACHEDIR.TAG").is_file() {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("devserve-filter-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src/nested")).expect("temp tree");
        dir.canonicalize().expect("canonical")
    }

    #[test]
    fn defaults_drop_vcs_output_and_editor_files() {
        let root = tree("defaults");
        let filter = Filter::new(std::slice::from_ref(&root), &[], &[], &[], true).expect("filter");
        assert!(filter.counts(&root.join("src/main.rs")));
        for ignored in [
            ".git/index",
            "target/debug/app",
            "src/.main.rs.swp",
            "src/main.rs~",
            "src/4913",
            "x/__pycache__/a",
        ] {
            assert!(!filter.counts(&root.join(ignored)), "{ignored} should be ignored");
        }
        assert!(!filter.counts(Path::new("/elsewhere/file")));
        std::fs::remove_dir_all(&root).expect("clean up");
    }

    #[test]
    fn gitignore_globs_and_extensions() {
        let root = tree("rules");
        std::fs::write(root.join(".gitignore"), "*.log\n/dist\n").expect("write");
        std::fs::write(root.join("src/.gitignore"), "!keep.log\ngenerated/\n").expect("write");
        std::fs::create_dir_all(root.join("src/generated")).expect("mkdir");
        std::fs::create_dir_all(root.join("cache")).expect("mkdir");
        std::fs::write(root.join("cache/CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55")
            .expect("write");
        let mut filter =
            Filter::new(std::slice::from_ref(&root), &[], &["assets/**".into()], &[], true).expect("filter");
        filter.load_ignore_file(&root.join("src/.gitignore"));
        assert!(!filter.counts(&root.join("debug.log")));
        assert!(!filter.counts(&root.join("dist/app.js")));
        assert!(filter.counts(&root.join("src/keep.log")), "deeper whitelist wins");
        assert!(!filter.counts(&root.join("src/generated/x.rs")));
        assert!(!filter.counts(&root.join("assets/logo.png")));
        assert!(!filter.counts(&root.join("cache/blob")));
        let no_vcs = Filter::new(std::slice::from_ref(&root), &[], &[], &[], false).expect("filter");
        assert!(no_vcs.counts(&root.join("debug.log")));
        let rust_only =
            Filter::new(std::slice::from_ref(&root), &[], &[], &["rs".into(), ".toml".into()], true)
                .expect("filter");
        assert!(rust_only.counts(&root.join("src/main.rs")));
        assert!(rust_only.counts(&root.join("Cargo.toml")));
        assert!(!rust_only.counts(&root.join("README.md")));
        std::fs::remove_dir_all(&root).expect("clean up");
    }

    #[test]
    fn devserve_own_files_never_count() {
        let root = tree("own");
        let own = vec![root.join("tmp/devserve-1-abc"), root.join("app.pid")];
        let filter = Filter::new(std::slice::from_ref(&root), &[], &[], &[], true)
            .expect("filter")
            .with_own_files(own);
        assert!(!filter.counts(&root.join("tmp/devserve-1-abc/notify-1.sock")));
        assert!(!filter.counts(&root.join("app.pid")));
        assert!(filter.counts(&root.join("tmp/other")));
        std::fs::remove_dir_all(&root).expect("clean up");
    }

    #[test]
    fn a_bad_glob_is_one_line() {
        let error = Filter::new(&[], &[], &["a[".into()], &[], true).expect_err("unclosed class").to_string();
        assert!(error.starts_with("invalid --ignore glob `a[`"), "{error}");
    }
}
