//! Zero-config detection: what devserve would run in a folder that has no COMMAND and no
//! `command` in a config file.
//!
//! This module owns one question, "what is this folder, and how would devserve run it?", and
//! answers it with the settings a `devserve.toml` would hold ([`Project::settings`]: each a
//! config-file key, its value as TOML, and where it came from). Running them (the loader),
//! writing them as commented TOML (`devserve init`) and printing them are not here.
//!
//! Contract:
//! - It never runs the project's code. It reads files (manifests, a Procfile, Python and Go
//!   sources) and runs `cargo metadata --no-deps --format-version 1`, which reads manifests and
//!   builds nothing: no build script, no proc macro, no download.
//! - The kinds, in order of preference when several match (a Django project with a
//!   package.json for its assets is a Django project): Cargo, Django (`manage.py`), Procfile
//!   (its `web:` process), pyproject.toml (FastAPI, Starlette, Flask), Go (`go.mod`), Node
//!   (`package.json`). The first that can run is the answer ([`Detection::Found`], or
//!   [`Detection::Ambiguous`] when it needs the user to choose); a kind recognised but declined
//!   gives way to the next, and is the answer only when none can run. The others found are
//!   named in a note.
//! - A `Cargo.toml` counts in the folder itself, or in an ancestor (devserve run inside a
//!   package's `src`, or in a workspace member's folder) when the folder holds no other kind's
//!   marker: a Python app kept inside a Rust repository is that app, not the repository.
//! - Where each value comes from: Cargo's from `cargo metadata` (the package, its binaries and
//!   `default-run`, its build script, the workspace, the target directory with
//!   `CARGO_TARGET_DIR` and `build.target-dir` honoured) and the folders present; the other
//!   kinds' from their manifests and the conventions of their stack, documented at each
//!   function. Each [`Found`] says which, in `from`.
//! - Keys produced: `command`, `watch`, `ignore`, `build`, `proxy`, in that order (the
//!   configuration file's), and nothing else. `proxy` is always the default front door,
//!   [`FRONT_DOOR`]; the app gets its private port as `$PORT` or in place of `{port}`.
//! - No output and no state: every problem becomes a [`Detection::Declined`] saying why.

use std::path::{Component, Path, PathBuf};

use cargo_metadata::{DependencyKind, Metadata, MetadataCommand, Package, PackageId, Target};

/// What [`Detection::Nothing`] says was looked for.
pub const LOOKED_FOR: &str =
    "looked for Cargo.toml, manage.py, pyproject.toml, Procfile, package.json, go.mod";

/// The `proxy` every detected project gets: the default front door, `auto` (127.0.0.1:8080, or
/// the next free port up to 8099).
pub const FRONT_DOOR: &str = "auto";

/// Files read to recognise a project are small; a larger one is not what it claims to be.
const MAX_READ: u64 = 1024 * 1024;

/// What Django, FastAPI, Flask and Procfile apps on Python leave in the folder that is not
/// source: SQLite databases, caches, virtualenvs.
const PYTHON_IGNORE: &[&str] = &["*.sqlite3", "__pycache__/**", ".venv/**", "venv/**"];
/// Django's own output besides [`PYTHON_IGNORE`]: uploads and `collectstatic`'s folder.
const DJANGO_IGNORE: &[&str] = &["media/**", "staticfiles/**"];
/// Node's dependencies and the usual build outputs.
const NODE_IGNORE: &[&str] = &["node_modules/**", "dist/**", ".next/**"];

/// What detection found in a folder.
#[derive(Debug, Clone, PartialEq)]
pub enum Detection {
    /// A project devserve can run: what it is and its settings.
    Found(Project),
    /// A project of a kind devserve recognises but will not run, and why (e.g. package.json's
    /// `dev` script is `vite`: a dev server with its own watcher and reload — run it as is, or
    /// put devserve in front of your API instead).
    Declined { kind: String, why: String },
    /// Several candidates and no way to choose (a Cargo package with several binaries and no
    /// default-run): the message lists them and says how to choose.
    Ambiguous { kind: String, message: String },
    /// Nothing recognised: what was looked for, one line ([`LOOKED_FOR`]).
    Nothing { looked_for: String },
}

/// A project devserve can run.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    /// "a Cargo package (myapp)", "a Django project", "a Node app (package.json start script)", …
    pub kind: String,
    /// The settings, in the order a config file would list them.
    pub settings: Vec<Found>,
    /// Services, each with its own settings (a Procfile with several processes): the settings
    /// above are then the top level's, every service's defaults.
    pub services: Vec<(String, Vec<Found>)>,
    /// Lines to tell the user beside the settings (may be empty).
    pub notes: Vec<String>,
}

impl Project {
    /// The value of one setting, by its config-file key.
    #[cfg(test)]
    pub fn setting(&self, key: &str) -> Option<&toml::Value> {
        self.settings.iter().find(|found| found.key == key).map(|found| &found.value)
    }
}

/// One setting: a config-file key, its value as TOML, and where it came from
/// ("Cargo.toml's default-run", "cargo metadata's target directory", "present in the folder",
/// "the default front door", …).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub key: &'static str,
    pub value: toml::Value,
    pub from: String,
}

impl Found {
    fn string(key: &'static str, value: impl Into<String>, from: impl Into<String>) -> Found {
        Found { key, value: toml::Value::String(value.into()), from: from.into() }
    }

    fn list<S: Into<String>>(
        key: &'static str,
        values: impl IntoIterator<Item = S>,
        from: impl Into<String>,
    ) -> Found {
        let values = values.into_iter().map(|v| toml::Value::String(v.into())).collect();
        Found { key, value: toml::Value::Array(values), from: from.into() }
    }

    fn proxy() -> Found {
        Found::string("proxy", FRONT_DOOR, "the default front door")
    }
}

/// The kinds of project, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cargo,
    Django,
    Procfile,
    Pyproject,
    Go,
    Node,
}

impl Kind {
    const PREFERENCE: [Kind; 6] =
        [Kind::Cargo, Kind::Django, Kind::Procfile, Kind::Pyproject, Kind::Go, Kind::Node];

    /// The file that marks the kind.
    fn marker(self) -> &'static str {
        match self {
            Kind::Cargo => "Cargo.toml",
            Kind::Django => "manage.py",
            Kind::Procfile => "Procfile",
            Kind::Pyproject => "pyproject.toml",
            Kind::Go => "go.mod",
            Kind::Node => "package.json",
        }
    }

    fn detect(self, dir: &Path) -> Detection {
        match self {
            Kind::Cargo => cargo(dir),
            Kind::Django => django(dir),
            Kind::Procfile => procfile(dir),
            Kind::Pyproject => pyproject(dir),
            Kind::Go => go(dir),
            Kind::Node => node(dir),
        }
    }
}

/// Looks at `dir` and says what devserve would run there (see the module's contract).
pub fn detect(dir: &Path) -> Detection {
    let nothing = || Detection::Nothing { looked_for: LOOKED_FOR.into() };
    let Ok(dir) = dir.canonicalize() else { return nothing() };
    let mut present: Vec<Kind> =
        Kind::PREFERENCE.into_iter().filter(|kind| dir.join(kind.marker()).is_file()).collect();
    // A Cargo.toml above the folder counts only when the folder is nothing else.
    if present.is_empty() && dir.ancestors().skip(1).any(|a| a.join("Cargo.toml").is_file()) {
        present.push(Kind::Cargo);
    }
    let mut declined: Vec<(Kind, String, String)> = Vec::new();
    for (at, &kind) in present.iter().enumerate() {
        match kind.detect(&dir) {
            Detection::Found(mut project) => {
                for (other, other_kind, why) in &declined {
                    project.notes.push(format!("{}: {other_kind}, not run: {why}", other.marker()));
                }
                let later: Vec<&str> = present[at + 1..].iter().map(|k| k.marker()).collect();
                if !later.is_empty() {
                    project.notes.push(format!(
                        "also here: {} (not used: devserve prefers Cargo, Django, Procfile, pyproject.toml, \
                         Go, Node in that order; give a COMMAND or write devserve.toml to run another)",
                        later.join(", ")
                    ));
                }
                return Detection::Found(project);
            }
            ambiguous @ Detection::Ambiguous { .. } => return ambiguous,
            Detection::Declined { kind: what, why } => declined.push((kind, what, why)),
            Detection::Nothing { .. } => {}
        }
    }
    match declined.into_iter().next() {
        Some((_, kind, why)) => Detection::Declined { kind, why },
        None => nothing(),
    }
}

// ---------------------------------------------------------------------------------------------
// Cargo

/// A Cargo package, through `cargo metadata --no-deps` (never a hand-read Cargo.toml).
///
/// - The package is the workspace member whose folder is `dir` or its nearest ancestor; at a
///   virtual workspace's root, the only member with a binary (or the only default member with
///   one), else the choice is the user's.
/// - The binary: `default-run`, else the only `bin` target, else the one named like the package.
/// - `build` is `cargo build`, with `-p PKG` in a workspace of several members and `--bin NAME`
///   when the package has several binaries; `command` is `<target directory>/debug/NAME`, the
///   target directory as cargo reports it (`CARGO_TARGET_DIR`, `build.target-dir`), relative
///   to `dir` when inside it.
/// - `watch` is what the build reads and is cheap to watch: `src`, `Cargo.toml`, the build
///   script, `templates`/`assets`/`static`/`migrations` when present, the workspace's manifest,
///   and the same of the workspace members the package depends on by path. Not `Cargo.lock`:
///   cargo rewrites it during builds, so watching it would rebuild after every build.
/// - No `ignore`: the watched paths do not hold the target directory (and devserve's watcher
///   drops folders tagged with `CACHEDIR.TAG`, as cargo tags its target directory, anyway).
fn cargo(dir: &Path) -> Detection {
    let metadata = match MetadataCommand::new().current_dir(dir).no_deps().exec() {
        Ok(metadata) => metadata,
        Err(e) => {
            return Detection::Declined {
                kind: "a Cargo project".into(),
                why: format!("`cargo metadata` failed: {}", one_line(&e.to_string())),
            };
        }
    };
    let members = metadata.workspace_packages();
    let target_dir = metadata.target_directory.as_std_path();
    let shown_target = command_path(target_dir, dir);
    let own = members
        .iter()
        .copied()
        .filter(|p| dir.starts_with(package_dir(p)))
        .max_by_key(|p| package_dir(p).components().count());
    let (package, chosen) = match own {
        Some(package) => (package, None),
        None => match workspace_choice(&metadata, &members, &shown_target) {
            Ok((package, why)) => (package, Some(why)),
            Err(detection) => return detection,
        },
    };
    let name = package.name.to_string();
    let in_workspace = members.len() > 1;
    let kind = if in_workspace {
        format!("a Cargo package ({name}, one of {} workspace members)", members.len())
    } else {
        format!("a Cargo package ({name})")
    };
    let bins: Vec<&Target> = package.targets.iter().filter(|t| t.is_bin()).collect();
    let bin_names: Vec<&str> = bins.iter().map(|t| t.name.as_str()).collect();
    let p_flag = if in_workspace { format!(" -p {name}") } else { String::new() };
    let (bin, bin_from) = match (&package.default_run, bins.as_slice()) {
        (Some(run), _) if bin_names.contains(&run.as_str()) => (run.as_str(), "Cargo.toml's default-run"),
        (Some(run), _) => {
            return Detection::Declined {
                kind,
                why: format!(
                    "Cargo.toml's default-run is `{run}`, which is not one of its binaries ({})",
                    list_or_none(&bin_names)
                ),
            };
        }
        (None, []) => {
            return Detection::Declined {
                kind,
                why: "it has no binary target: devserve runs a program, and a library is not one".into(),
            };
        }
        (None, [only]) => (only.name.as_str(), "the package's only binary"),
        (None, several) => match several.iter().find(|t| t.name == name) {
            Some(named) => (named.name.as_str(), "the binary named like the package"),
            None => {
                return Detection::Ambiguous {
                    kind,
                    message: format!(
                        "{name} has {} binaries and no default-run: {}. Choose one: devserve -b 'cargo \
                         build{p_flag} --bin NAME' -- {}, or set default-run = \"NAME\" under [package] in \
                         Cargo.toml",
                        several.len(),
                        bin_names.join(", "),
                        text(&shown_target.join("debug").join("NAME")),
                    ),
                };
            }
        },
    };

    let mut build = String::from("cargo build");
    let mut build_from = format!("cargo metadata: package {name}");
    if in_workspace {
        build.push_str(&p_flag);
        build_from.push_str(&format!(", one of {} workspace members (-p)", members.len()));
    }
    if bins.len() > 1 {
        build.push_str(&format!(" --bin {bin}"));
        build_from.push_str(&format!(", with {} binaries (--bin)", bins.len()));
    }
    let program = shown_target.join("debug").join(bin);
    let command_from = match chosen {
        Some(why) => format!("cargo metadata's target directory, {why} and {bin_from}"),
        None => format!("cargo metadata's target directory and {bin_from}"),
    };
    let (watch, watch_from) = cargo_watch(&metadata, &members, package, bin);

    let mut notes = vec![format!(
        "the app must listen on the port devserve gives each worker in $PORT (std::env::var(\"PORT\")); \
         the front door forwards to it"
    )];
    let pkg_dir = package_dir(package);
    if pkg_dir != dir {
        notes.push(format!(
            "the package is in {}: the paths are relative to this folder, where devserve runs",
            text(&relative(&pkg_dir, dir))
        ));
    }
    Detection::Found(Project {
        services: Vec::new(),
        kind,
        settings: vec![
            Found::list("command", [text(&program)], command_from),
            Found::list("watch", watch.iter().map(|p| text(&relative(p, dir))), watch_from),
            Found::string("build", build, build_from),
            Found::proxy(),
        ],
        notes,
    })
}

/// At a virtual workspace's root (or a folder of it that is no member's): the member to run.
fn workspace_choice<'m>(
    metadata: &'m Metadata,
    members: &[&'m Package],
    shown_target: &Path,
) -> Result<(&'m Package, &'static str), Detection> {
    let kind = format!("a Cargo workspace ({} members)", members.len());
    let with_bins: Vec<&Package> =
        members.iter().copied().filter(|p| p.targets.iter().any(Target::is_bin)).collect();
    let defaults: Vec<&Package> = if metadata.workspace_default_members.is_available() {
        with_bins.iter().copied().filter(|p| metadata.workspace_default_members.contains(&p.id)).collect()
    } else {
        Vec::new()
    };
    match (with_bins.as_slice(), defaults.as_slice()) {
        ([], _) => Err(Detection::Declined {
            kind,
            why: "no member has a binary target: devserve runs a program, and a library is not one".into(),
        }),
        ([only], _) => Ok((only, "the workspace's only member with a binary")),
        (_, [only]) => Ok((only, "the workspace's only default member with a binary")),
        (several, _) => {
            let listed: Vec<String> = several
                .iter()
                .map(|p| {
                    let bins: Vec<&str> =
                        p.targets.iter().filter(|t| t.is_bin()).map(|t| t.name.as_str()).collect();
                    format!("{} ({})", p.name, bins.join(", "))
                })
                .collect();
            Err(Detection::Ambiguous {
                kind,
                message: format!(
                    "{} members have binaries: {}. Choose one: run devserve in its folder, or devserve -b \
                     'cargo build -p PKG --bin NAME' -- {}",
                    several.len(),
                    listed.join(", "),
                    text(&shown_target.join("debug").join("NAME")),
                ),
            })
        }
    }
}

/// The paths to watch for `package` (absolute, in order, each once) and where they came from.
fn cargo_watch(
    metadata: &Metadata,
    members: &[&Package],
    package: &Package,
    bin: &str,
) -> (Vec<PathBuf>, String) {
    let mut watch: Vec<PathBuf> = Vec::new();
    // Each path once, and only when it is there (a folder holds its files already).
    fn push(path: PathBuf, watch: &mut Vec<PathBuf>) {
        if path.exists() && !watch.iter().any(|w| path.starts_with(w)) {
            watch.push(path);
        }
    }
    let pkg_dir = package_dir(package);
    let mut what = vec!["src", "Cargo.toml"];
    push(pkg_dir.join("src"), &mut watch);
    push(pkg_dir.join("Cargo.toml"), &mut watch);
    if let Some(script) = package.targets.iter().find(|t| t.is_custom_build()) {
        push(script.src_path.as_std_path().to_path_buf(), &mut watch);
        what.push("build script");
    }
    // A binary or library kept outside `src` ([[bin]] path = "main.rs"): its folder, or the
    // file itself when that folder is the package's (which holds the target directory).
    for target in package.targets.iter().filter(|t| (t.is_bin() && t.name == bin) || t.is_lib()) {
        let source = target.src_path.as_std_path();
        match source.parent() {
            Some(parent) if parent != pkg_dir => push(parent.to_path_buf(), &mut watch),
            _ => push(source.to_path_buf(), &mut watch),
        }
    }
    for folder in ["templates", "assets", "static", "migrations"] {
        let path = pkg_dir.join(folder);
        if path.is_dir() {
            push(path, &mut watch);
            what.push(folder);
        }
    }
    let mut from = format!("the package's {}, present in its folder", what.join(", "));
    let workspace_manifest = metadata.workspace_root.as_std_path().join("Cargo.toml");
    if workspace_manifest != pkg_dir.join("Cargo.toml") && workspace_manifest.is_file() {
        push(workspace_manifest, &mut watch);
        from.push_str("; the workspace's Cargo.toml");
    }
    // The workspace members it builds from source, through path dependencies (transitively).
    let mut seen: Vec<&PackageId> = vec![&package.id];
    let mut pending = vec![package];
    let mut deps: Vec<String> = Vec::new();
    while let Some(current) = pending.pop() {
        for dep in current.dependencies.iter().filter(|d| d.kind != DependencyKind::Development) {
            let Some(path) = &dep.path else { continue };
            let Some(member) = members.iter().find(|m| package_dir(m) == path.as_std_path()) else {
                continue;
            };
            if seen.contains(&&member.id) {
                continue;
            }
            seen.push(&member.id);
            pending.push(member);
            deps.push(member.name.to_string());
            let member_dir = package_dir(member);
            push(member_dir.join("src"), &mut watch);
            push(member_dir.join("Cargo.toml"), &mut watch);
            if let Some(script) = member.targets.iter().find(|t| t.is_custom_build()) {
                push(script.src_path.as_std_path().to_path_buf(), &mut watch);
            }
        }
    }
    if !deps.is_empty() {
        from.push_str(&format!(
            "; src and Cargo.toml of the workspace members it depends on by path ({})",
            deps.join(", ")
        ));
    }
    from.push_str(" (not Cargo.lock: cargo rewrites it during builds)");
    (watch, from)
}

/// The folder of a package's manifest.
fn package_dir(package: &Package) -> PathBuf {
    package.manifest_path.parent().map_or_else(PathBuf::new, |p| p.as_std_path().to_path_buf())
}

/// A path as `command` shows it: relative to `dir` when inside it, absolute otherwise.
fn command_path(path: &Path, dir: &Path) -> PathBuf {
    match path.strip_prefix(dir) {
        Ok(inside) if !inside.as_os_str().is_empty() => inside.to_path_buf(),
        _ => path.to_path_buf(),
    }
}

/// `path` relative to `base` (both absolute), with `..` where it lies outside: how a `watch`
/// entry is written, devserve resolving it against the folder it runs in.
fn relative(path: &Path, base: &Path) -> PathBuf {
    if let Ok(inside) = path.strip_prefix(base) {
        return if inside.as_os_str().is_empty() { PathBuf::from(".") } else { inside.to_path_buf() };
    }
    let mut path_parts = path.components().peekable();
    let mut base_parts = base.components().peekable();
    while let (Some(a), Some(b)) = (path_parts.peek(), base_parts.peek()) {
        if a != b {
            break;
        }
        path_parts.next();
        base_parts.next();
    }
    let mut out: PathBuf = base_parts.filter(|c| matches!(c, Component::Normal(_))).map(|_| "..").collect();
    out.extend(path_parts);
    out
}

// ---------------------------------------------------------------------------------------------
// Python

/// `manage.py`: Django's development server on devserve's port, with its own reloader off
/// (`--noreload`: devserve reloads it, and two reloaders fight). The whole folder is watched
/// (Django has no single source folder), less its data and output.
fn django(dir: &Path) -> Detection {
    let mut notes = venv_note(dir).into_iter().collect::<Vec<_>>();
    notes.insert(
        0,
        "runserver listens on the port devserve puts in place of {port}, behind the front door".to_owned(),
    );
    Detection::Found(Project {
        services: Vec::new(),
        kind: "a Django project".into(),
        settings: vec![
            Found::list(
                "command",
                ["python3", "manage.py", "runserver", "127.0.0.1:{port}", "--noreload"],
                "manage.py present in the folder: Django's runserver, its reloader off (--noreload) as \
                 devserve reloads it",
            ),
            Found::list("watch", ["."], "the whole project (Django has no single source folder)"),
            Found::list(
                "ignore",
                PYTHON_IGNORE.iter().chain(DJANGO_IGNORE).copied(),
                "Python's caches and virtualenvs, SQLite databases, Django's media uploads and collected \
                 static files",
            ),
            Found::proxy(),
        ],
        notes,
    })
}

/// `pyproject.toml` naming FastAPI, Starlette or uvicorn (run with uvicorn), or Flask (run with
/// `flask run`), and a module that makes the app at its top level (`app = FastAPI(`): the first
/// of `main.py`, `app.py`, `app/main.py`, `src/<package>/main.py`, `src/<package>/app.py`.
fn pyproject(dir: &Path) -> Detection {
    let project = "a Python project (pyproject.toml)";
    let declined = |why: String| Detection::Declined { kind: project.into(), why };
    let Some(manifest) = read_small(&dir.join("pyproject.toml")) else {
        return declined("pyproject.toml cannot be read".into());
    };
    let table = match manifest.parse::<toml::Table>() {
        Ok(table) => table,
        Err(e) => return declined(format!("pyproject.toml does not parse: {}", one_line(e.message()))),
    };
    let deps = python_dependencies(&table);
    let asgi = ["fastapi", "starlette", "uvicorn"].into_iter().find(|d| deps.iter().any(|n| n == d));
    let flask = deps.iter().any(|n| n == "flask");
    let mut notes: Vec<String> = venv_note(dir).into_iter().collect();
    let settings = |command: Vec<String>, command_from: String| {
        vec![
            Found::list("command", command, command_from),
            Found::list("watch", ["."], "the whole project"),
            Found::list(
                "ignore",
                PYTHON_IGNORE.iter().copied(),
                "Python's caches and virtualenvs, SQLite databases",
            ),
            Found::proxy(),
        ]
    };
    let modules = python_modules(dir);
    if let Some(dep) = asgi {
        for module in &modules {
            let Some((var, framework)) = app_variable(&module.file, &["FastAPI", "Starlette"]) else {
                continue;
            };
            let mut command: Vec<String> =
                ["python3", "-m", "uvicorn"].into_iter().map(String::from).collect();
            command.push(format!("{}:{var}", module.name));
            if let Some(app_dir) = module.app_dir {
                command.extend(["--app-dir".into(), app_dir.into()]);
            }
            command.extend(["--port".into(), "{port}".into()]);
            notes.insert(
                0,
                "uvicorn listens on the port devserve puts in place of {port}, behind the front door"
                    .to_owned(),
            );
            return Detection::Found(Project {
                services: Vec::new(),
                kind: format!("a {framework} app (pyproject.toml)"),
                settings: settings(
                    command,
                    format!(
                        "pyproject.toml's dependencies ({dep}) and `{var} = {framework}(` in {}",
                        module.shown
                    ),
                ),
                notes,
            });
        }
    }
    if flask {
        for module in &modules {
            let Some((var, _)) = app_variable(&module.file, &["Flask"]) else { continue };
            // `flask --app MODULE` finds a variable named app or application by itself.
            let target = if var == "app" || var == "application" {
                module.name.clone()
            } else {
                format!("{}:{var}", module.name)
            };
            let command: Vec<String> =
                ["python3", "-m", "flask", "--app", &target, "run", "--port", "{port}"]
                    .into_iter()
                    .map(String::from)
                    .collect();
            notes.insert(
                0,
                "flask run listens on the port devserve puts in place of {port}, behind the front door"
                    .to_owned(),
            );
            if module.app_dir.is_some() {
                notes.push(format!(
                    "{} is in a src layout: flask imports {} only when the package is installed \
                     (pip install -e .)",
                    module.shown, module.name
                ));
            }
            return Detection::Found(Project {
                services: Vec::new(),
                kind: "a Flask app (pyproject.toml)".into(),
                settings: settings(
                    command,
                    format!("pyproject.toml's dependencies (flask) and `{var} = Flask(` in {}", module.shown),
                ),
                notes,
            });
        }
    }
    match (asgi, flask) {
        (None, false) => declined(
            "its dependencies name none of fastapi, starlette, uvicorn or flask (a Django project has \
             manage.py): give the COMMAND after --"
                .into(),
        ),
        (Some(_), _) => declined(
            "no main.py, app.py, app/main.py or src/<package>/main.py makes `app = FastAPI(` (or \
             Starlette) at its top level: give the COMMAND, e.g. devserve -- python3 -m uvicorn MODULE:app \
             --port '{port}'"
                .into(),
        ),
        (None, true) => declined(
            "no main.py, app.py, app/main.py or src/<package>/main.py makes `app = Flask(` at its top \
             level: give the COMMAND, e.g. devserve -- python3 -m flask --app MODULE run --port '{port}'"
                .into(),
        ),
    }
}

/// The names (lowercase, `_` as `-`) of a pyproject's dependencies: PEP 621's `dependencies`
/// and `optional-dependencies`, and Poetry's `[tool.poetry.dependencies]`.
fn python_dependencies(table: &toml::Table) -> Vec<String> {
    let mut specs: Vec<String> = Vec::new();
    if let Some(project) = table.get("project").and_then(toml::Value::as_table) {
        let optional = project.get("optional-dependencies").and_then(toml::Value::as_table);
        let lists =
            project.get("dependencies").into_iter().chain(optional.into_iter().flat_map(|t| t.values()));
        for list in lists.filter_map(toml::Value::as_array) {
            specs.extend(list.iter().filter_map(toml::Value::as_str).map(String::from));
        }
    }
    let poetry = table
        .get("tool")
        .and_then(|t| t.get("poetry"))
        .and_then(|p| p.get("dependencies"))
        .and_then(toml::Value::as_table);
    specs.extend(poetry.into_iter().flat_map(|t| t.keys().cloned()));
    specs
        .iter()
        .map(|spec| {
            let name = spec
                .trim()
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
                .next()
                .unwrap_or_default();
            name.to_ascii_lowercase().replace('_', "-")
        })
        .collect()
}

/// A Python module that may make the app.
struct PyModule {
    file: PathBuf,
    /// As shown to the user: `main.py`, `src/shop/main.py`.
    shown: String,
    /// The import name: `main`, `shop.main`.
    name: String,
    /// The folder to import from when it is not the project's (`src`).
    app_dir: Option<&'static str>,
}

fn python_modules(dir: &Path) -> Vec<PyModule> {
    let mut modules: Vec<PyModule> = [("main.py", "main"), ("app.py", "app"), ("app/main.py", "app.main")]
        .into_iter()
        .map(|(shown, name)| PyModule {
            file: dir.join(shown),
            shown: shown.into(),
            name: name.into(),
            app_dir: None,
        })
        .collect();
    let mut packages: Vec<String> = std::fs::read_dir(dir.join("src"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .filter_map(|entry| entry.file_name().to_str().map(String::from))
        .filter(|name| is_identifier(name))
        .collect();
    packages.sort();
    for package in packages {
        for file in ["main", "app"] {
            modules.push(PyModule {
                file: dir.join("src").join(&package).join(format!("{file}.py")),
                shown: format!("src/{package}/{file}.py"),
                name: format!("{package}.{file}"),
                app_dir: Some("src"),
            });
        }
    }
    modules.retain(|m| m.file.is_file());
    modules
}

/// The top-level variable a module assigns one of `classes` to (`app = FastAPI(`, `app:
/// Flask = Flask(__name__)`, `app = fastapi.FastAPI()`), and the class.
fn app_variable(file: &Path, classes: &[&'static str]) -> Option<(String, &'static str)> {
    let source = read_small(file)?;
    for line in source.lines() {
        // Top level only: an app made inside a factory function is not importable as a variable.
        if line.starts_with(char::is_whitespace) || line.starts_with('#') {
            continue;
        }
        for &class in classes {
            let Some(at) = line.find(&format!("{class}(")) else { continue };
            let before = line[..at].trim_end();
            // A qualified name: `fastapi.FastAPI(`.
            let before = if before.ends_with('.') {
                before.trim_end_matches(|c: char| c.is_alphanumeric() || c == '_' || c == '.')
            } else {
                before
            };
            let Some(lhs) = before.trim_end().strip_suffix('=') else { continue };
            let var = lhs.split(':').next().unwrap_or_default().trim();
            if is_identifier(var) {
                return Some((var.to_owned(), class));
            }
        }
    }
    None
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// A virtualenv in the folder: `python3` finds its packages only when it is activated.
fn venv_note(dir: &Path) -> Option<String> {
    [".venv", "venv"].into_iter().find(|v| dir.join(v).join("bin").join("python").exists()).map(|v| {
        format!(
            "a virtualenv is here ({v}): start devserve with it activated, or write {v}/bin/python for \
             python3 in `command`"
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Procfile

/// A Procfile (honcho and foreman's format, `NAME: COMMAND` a line). Its `web:` process alone is
/// the app; with other processes beside it, each process is a service (`[services.NAME]`, the
/// name in lowercase with `_` as `-`): `web` at the route `/`, any other whose command names
/// `$PORT` at `/NAME` with the prefix stripped (and at `NAME.localhost`), the rest supervised
/// and never proxied. Each runs under `sh -c` so that `$PORT` and the rest of the shell's syntax
/// work: devserve sets `PORT` in each routed worker's environment. A single command is
/// `exec`'d, so that devserve's signals reach it rather than the shell. Ignores for the stacks
/// the folder or the command shows (Python, Node).
fn procfile(dir: &Path) -> Detection {
    let kind = "a Procfile app (its web process)";
    let declined = |why: &str| Detection::Declined { kind: kind.into(), why: why.into() };
    let Some(text) = read_small(&dir.join("Procfile")) else {
        return declined("the Procfile cannot be read");
    };
    let processes: Vec<(String, &str)> = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let (name, command) = line.split_once(':')?;
            let name = name.trim().to_ascii_lowercase().replace('_', "-");
            let fine = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            (fine && !command.trim().is_empty()).then(|| (name, command.trim()))
        })
        .collect();
    let web = processes.iter().find(|(name, _)| name == "web").map(|(_, command)| *command);
    let Some(web) = web else {
        return declined("it has no `web:` process: devserve runs the web process, the one that serves HTTP");
    };
    let services: Vec<(String, Vec<Found>)> = if processes.len() < 2 {
        Vec::new()
    } else {
        processes
            .iter()
            .map(|(name, command)| {
                let mut settings = vec![Found::list(
                    "command",
                    ["sh".to_owned(), "-c".to_owned(), exec_form(command)],
                    format!("the Procfile's {name}: line"),
                )];
                if name == "web" {
                    settings.push(Found::string("route", "/", "the web process serves the site"));
                } else if command.contains("$PORT") || command.contains("${PORT}") {
                    settings.push(Found::string("route", format!("/{name}"), "its command listens on $PORT"));
                    settings.push(Found {
                        key: "strip-prefix",
                        value: toml::Value::Boolean(true),
                        from: "the process serves at its own root".into(),
                    });
                }
                (name.clone(), settings)
            })
            .collect()
    };
    let kind = if services.is_empty() {
        kind.to_owned()
    } else {
        format!("a Procfile ({} processes, each a service)", services.len())
    };
    let script = exec_form(web);
    let program = segments(web).into_iter().next().and_then(|words| program(&words).map(|(p, _)| p));
    let program = program.unwrap_or_default();
    let here = |name: &str| dir.join(name).exists();
    let python =
        ["manage.py", "pyproject.toml", "requirements.txt", "setup.py", "Pipfile"].into_iter().any(here)
            || program.starts_with("python")
            || ["gunicorn", "uvicorn", "hypercorn", "flask", "daphne", "waitress-serve", "manage.py"]
                .contains(&program.as_str());
    let node =
        here("package.json") || ["node", "npm", "yarn", "pnpm", "bun", "npx"].contains(&program.as_str());
    let mut settings = Vec::new();
    if services.is_empty() {
        settings.push(Found::list(
            "command",
            ["sh".to_owned(), "-c".to_owned(), script],
            "the Procfile's web: line",
        ));
    }
    settings.push(Found::list("watch", ["."], "the whole project (a Procfile names no source folder)"));
    let mut ignore: Vec<&str> = Vec::new();
    let mut stacks: Vec<&str> = Vec::new();
    if python {
        ignore.extend(PYTHON_IGNORE);
        stacks.push("Python's caches and virtualenvs, SQLite databases");
    }
    if node {
        ignore.extend(NODE_IGNORE);
        stacks.push("Node's node_modules and build outputs");
    }
    if !ignore.is_empty() {
        settings.push(Found::list("ignore", ignore, stacks.join("; ")));
    }
    settings.push(Found::proxy());
    let mut notes = vec![if web.contains("$PORT") || web.contains("${PORT}") {
        "$PORT in the Procfile is devserve's: each worker gets its own port there, behind the front door"
            .to_owned()
    } else {
        "the web process must listen on $PORT, which devserve sets for each worker, behind the front door"
            .to_owned()
    }];
    if let Some(hint) = script_reloading(web) {
        notes.push(format!("the Procfile's web process reloads itself: {hint}"));
    }
    if python {
        notes.extend(venv_note(dir));
    }
    Detection::Found(Project { kind, settings, notes, services })
}

/// A Procfile command as `sh -c` runs it: `exec`'d when it is a single command, after its
/// leading `VAR=value` words (`exec VAR=value cmd` would run a program named `VAR=value`). A list
/// or a pipeline stays the shell's (`exec` would end it at its first command), as do assignments
/// with quotes (the words could not be told apart without a shell's parser).
fn exec_form(command: &str) -> String {
    let unchanged = command.to_owned();
    if command.contains([';', '&', '|', '\n', '`', '(', ')']) {
        return unchanged;
    }
    let words: Vec<&str> = command.split_whitespace().collect();
    let assignments = words.iter().take_while(|w| is_assignment(w)).count();
    if words.get(assignments).is_none_or(|w| *w == "exec")
        || words[..assignments].iter().any(|w| w.contains(['"', '\'']))
    {
        return unchanged;
    }
    let mut rest = command.trim_start();
    for _ in 0..assignments {
        rest = rest.split_once(char::is_whitespace).map_or("", |(_, after)| after).trim_start();
    }
    if assignments == 0 {
        format!("exec {rest}")
    } else {
        format!("{} exec {rest}", words[..assignments].join(" "))
    }
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| is_identifier(name))
}

// ---------------------------------------------------------------------------------------------
// Go

/// `go.mod` with a `package main` in the folder. The build writes the binary to
/// `bin/devserve-app`, a folder inside the project that the watch ignores: a fixed relative
/// path that `command` can name, outside Go's caches, and that a build writing it does not
/// trigger the next build.
fn go(dir: &Path) -> Detection {
    let module = read_small(&dir.join("go.mod"))
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix("module ").map(|m| m.trim().trim_matches('"').to_owned()))
        })
        .unwrap_or_else(|| "go.mod".into());
    let kind = format!("a Go module ({module})");
    let Some(main) = main_package_file(dir) else {
        let commands: Vec<String> = std::fs::read_dir(dir.join("cmd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| main_package_file(&entry.path()).is_some())
            .filter_map(|entry| entry.file_name().to_str().map(|n| format!("cmd/{n}")))
            .collect();
        let found =
            if commands.is_empty() { String::new() } else { format!(" (found in {})", commands.join(", ")) };
        return Detection::Declined {
            kind,
            why: format!(
                "no `package main` in this folder{found}: run devserve where it is, or give the build and \
                 COMMAND: devserve -b 'go build -o bin/devserve-app ./cmd/NAME' -- bin/devserve-app"
            ),
        };
    };
    Detection::Found(Project {
        services: Vec::new(),
        kind,
        settings: vec![
            Found::list("command", ["bin/devserve-app"], "the binary the build writes"),
            Found::list("watch", ["."], "the whole module (its packages are folders of it)"),
            Found::list("ignore", ["bin/**"], "the build's output folder, inside the watched folder"),
            Found::string("build", "go build -o bin/devserve-app .", format!("`package main` in {main}")),
            Found::proxy(),
        ],
        notes: vec![format!(
            "the app must listen on the port devserve gives each worker in $PORT (os.Getenv(\"PORT\")); \
             the front door forwards to it"
        )],
    })
}

/// The first (by name) non-test `.go` file of `dir` in `package main`.
fn main_package_file(dir: &Path) -> Option<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().map(String::from))
        .filter(|name| name.ends_with(".go") && !name.ends_with("_test.go"))
        .collect();
    files.sort();
    files.into_iter().find(|name| {
        read_small(&dir.join(name)).is_some_and(|source| {
            source.lines().find_map(|line| line.trim().strip_prefix("package ")).is_some_and(|package| {
                package.split(|c: char| c.is_whitespace() || c == '/').next() == Some("main")
            })
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Node

/// `package.json`: its `start` script (`npm start`: npm passes `PORT` through), else its `main`
/// (`node MAIN`). Declined when what would run, or the `dev` script beside a start script that
/// serves a production build, is a bundler's own dev server: it has its own watcher and reload,
/// and devserve in front of it would only restart it.
fn node(dir: &Path) -> Detection {
    let project = "a Node project (package.json)";
    let Some(text) = read_small(&dir.join("package.json")) else {
        return Detection::Declined { kind: project.into(), why: "package.json cannot be read".into() };
    };
    let json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(json) => json,
        Err(e) => {
            return Detection::Declined {
                kind: project.into(),
                why: format!("package.json does not parse: {e}"),
            };
        }
    };
    let scripts = json.get("scripts").and_then(serde_json::Value::as_object);
    let script = |name: &str| scripts.and_then(|s| s.get(name)).and_then(serde_json::Value::as_str);
    // `npm run dev` and the like: the script it runs, one level down.
    let body = |text: &str| -> String {
        let words: Vec<&str> = text.split_whitespace().collect();
        let named = match words.as_slice() {
            ["npm" | "pnpm" | "yarn" | "bun", "run", name] | ["pnpm" | "yarn", name] => script(name),
            _ => None,
        };
        named.unwrap_or(text).to_owned()
    };
    let start = script("start").map(body);
    let dev = script("dev").map(body);
    let dev_tool = dev.as_deref().and_then(dev_server);
    let ignore =
        || Found::list("ignore", NODE_IGNORE.iter().copied(), "Node's node_modules and build outputs");
    let port_note =
        "the app must listen on process.env.PORT, which devserve sets for each worker; the front \
                     door forwards to it"
            .to_owned();
    let own_server = |script: &str, tool: &str| {
        format!(
            "the {script} script runs `{tool}`: a dev server with its own watcher and reload — run it as is \
             (npm run {script}), or put devserve in front of your API instead"
        )
    };
    if let Some(start) = start {
        let kind = "a Node app (package.json start script)";
        if let Some(tool) = dev_server(&start) {
            return supervised_dev_server("start", &tool).unwrap_or_else(|| Detection::Declined {
                kind: kind.into(),
                why: own_server("start", &tool),
            });
        }
        if let (Some(serves_build), Some(tool)) = (built_server(&start), &dev_tool) {
            return supervised_dev_server("dev", tool).unwrap_or_else(|| Detection::Declined {
                kind: kind.into(),
                why: format!(
                    "the start script runs `{serves_build}`, which serves a production build; {}",
                    own_server("dev", tool)
                ),
            });
        }
        let mut notes = vec![port_note];
        if let Some(hint) = script_reloading(&start) {
            notes.push(format!("package.json's start script reloads itself: {hint}"));
        }
        if let Some(tool) = dev_tool {
            notes.push(format!(
                "the dev script runs `{tool}`, its own dev server: run it beside devserve for the front end"
            ));
        }
        return Detection::Found(Project {
            services: Vec::new(),
            kind: kind.into(),
            settings: vec![
                Found::list("command", ["npm", "start"], "package.json's start script"),
                Found::list("watch", ["."], "the whole project"),
                ignore(),
                Found::proxy(),
            ],
            notes,
        });
    }
    if let Some(tool) = dev_tool {
        return supervised_dev_server("dev", &tool).unwrap_or_else(|| Detection::Declined {
            kind: "a Node app (package.json dev script)".into(),
            why: own_server("dev", &tool),
        });
    }
    match json.get("main").and_then(serde_json::Value::as_str) {
        Some(main) if dir.join(main).is_file() => Detection::Found(Project {
            services: Vec::new(),
            kind: "a Node app (package.json main)".into(),
            settings: vec![
                Found::list("command", ["node", main], "package.json's main (it has no start script)"),
                Found::list("watch", ["."], "the whole project"),
                ignore(),
                Found::proxy(),
            ],
            notes: vec![port_note],
        }),
        Some(main) => Detection::Declined {
            kind: project.into(),
            why: format!(
                "it has no start script, and its main ({main}) is not here: add a start script that runs \
                 your server"
            ),
        },
        None => Detection::Declined {
            kind: project.into(),
            why: "it has no start script and no main: add one, e.g. \"start\": \"node server.js\"".into(),
        },
    }
}

/// A bundler's dev server that `script` runs as `tool`, as a service of its own: routed at `/` on
/// the front door, supervised (restarted when it crashes) but never swapped (`watch = []`), and no
/// devserve reload in its pages (`browser-reload = false`): it has its own watcher and HMR. Its
/// port comes from devserve through the tool's flag (`--port {port}`, with `--strictPort` for
/// Vite, so that it never moves to another port), or `PORT` for Create React App. `None` for a
/// tool whose port flag devserve does not know.
fn supervised_dev_server(script: &str, tool: &str) -> Option<Detection> {
    let program = tool.split_whitespace().next().unwrap_or_default();
    let flags: &[&str] = match program {
        "vite" | "svelte-kit" | "remix" => &["--port", "{port}", "--strictPort"],
        "next" => &["-p", "{port}"],
        "nuxt" | "nuxi" | "astro" | "webpack" | "webpack-cli" | "webpack-dev-server" | "ng" | "parcel" => {
            &["--port", "{port}"]
        }
        "react-scripts" => &[],
        _ => return None,
    };
    let mut command = vec!["npm".to_owned(), "run".to_owned(), script.to_owned()];
    if !flags.is_empty() {
        command.push("--".to_owned());
        command.extend(flags.iter().map(|f| (*f).to_owned()));
    }
    let web = vec![
        Found::list(
            "command",
            command,
            format!("package.json's {script} script runs `{tool}`, its own dev server"),
        ),
        Found::string("route", "/", "it serves the whole site"),
        Found {
            key: "watch",
            value: toml::Value::Array(Vec::new()),
            from: "never restarted by changes: it reloads itself".into(),
        },
        Found {
            key: "browser-reload",
            value: toml::Value::Boolean(false),
            from: "its own HMR owns the page".into(),
        },
    ];
    Some(Detection::Found(Project {
        kind: format!("a Node front end (`{tool}`, supervised, not swapped)"),
        settings: vec![Found::proxy()],
        services: vec![("web".to_owned(), web)],
        notes: vec![format!(
            "`{tool}` has its own watcher and HMR: devserve routes to it and restarts it if it crashes, and \
             never restarts it on a save; declare your API beside it as a service (docs/src/services.md)"
        )],
    }))
}

/// The bundler dev server a script runs (`vite`, `next dev`, …), if any.
fn dev_server(script: &str) -> Option<String> {
    segments(script).iter().find_map(|words| {
        let (program, rest) = program(words)?;
        let sub = rest.first().map(String::as_str);
        let found = match program.as_str() {
            "vite" => sub.is_none_or(|s| s.starts_with('-') || s == "dev" || s == "serve"),
            "next" | "nuxt" | "nuxi" | "astro" | "svelte-kit" | "remix" => sub == Some("dev"),
            "webpack" | "webpack-cli" => sub == Some("serve"),
            "webpack-dev-server" => true,
            "react-scripts" => sub == Some("start"),
            "ng" => sub == Some("serve"),
            "parcel" => !matches!(sub, Some("build" | "watch")),
            _ => false,
        };
        let subcommand = sub.filter(|s| !s.starts_with('-') && !s.contains('.') && program != "parcel");
        found.then(|| match subcommand {
            Some(sub) if program != "webpack-dev-server" => format!("{program} {sub}"),
            _ => program.clone(),
        })
    })
}

/// The framework server a script runs that serves a production build (`next start`), if any.
fn built_server(script: &str) -> Option<String> {
    segments(script).iter().find_map(|words| {
        let (program, rest) = program(words)?;
        let sub = rest.first().map(String::as_str).unwrap_or_default();
        let found = match program.as_str() {
            "next" | "nuxt" => sub == "start" || sub == "preview",
            "nuxi" | "astro" | "vite" | "svelte-kit" => sub == "preview",
            "remix-serve" | "react-router-serve" | "serve" => true,
            _ => false,
        };
        found.then(|| {
            if sub.is_empty() || sub.starts_with('-') { program.clone() } else { format!("{program} {sub}") }
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Self-reloading apps

/// For an app command (argv), a one-line hint when the app reloads itself (two reloaders fight:
/// the old generation's own reloader restarts its child on the routed port): Django `runserver`
/// without `--noreload`, `flask run --debug` / `--reload`, `uvicorn`/`gunicorn`/`hypercorn
/// --reload`, `nodemon`, `node --watch`, `bun --watch`/`--hot`, `cargo watch`/`cargo-watch`, `air`,
/// `watchexec`. The hint says exactly what to drop or add. `sh -c SCRIPT` is looked into.
/// None otherwise.
pub fn self_reloading(argv: &[String]) -> Option<String> {
    if let [shell, flag, script, ..] = argv
        && ["sh", "bash", "dash", "zsh"].contains(&basename(shell))
        && flag == "-c"
    {
        return script_reloading(script);
    }
    reloader(argv)
}

/// [`self_reloading`] for a shell command line (a Procfile's line, a package.json script).
fn script_reloading(script: &str) -> Option<String> {
    segments(script).iter().find_map(|words| reloader(words))
}

fn reloader(words: &[String]) -> Option<String> {
    let (program, rest) = program(words)?;
    let has = |flag: &str| {
        rest.iter().any(|w| w == flag || w.strip_prefix(flag).is_some_and(|r| r.starts_with('=')))
    };
    let again = "devserve already reloads it";
    match program.as_str() {
        "manage.py" | "django-admin" if rest.iter().any(|w| w == "runserver") && !has("--noreload") => {
            Some(format!("add --noreload to runserver: {again}"))
        }
        "flask" if rest.iter().any(|w| w == "run") && !has("--no-reload") => {
            if has("--reload") {
                Some(format!("drop --reload from flask run: {again}"))
            } else if has("--debug") {
                Some(format!("add --no-reload to flask run (--debug turns Flask's reloader on): {again}"))
            } else {
                None
            }
        }
        "uvicorn" | "gunicorn" | "hypercorn"
            if rest
                .iter()
                .any(|w| w == "--reload" || w.starts_with("--reload-") || w.starts_with("--reload=")) =>
        {
            Some(format!("drop --reload (and --reload-*) from {program}: {again}"))
        }
        "nodemon" => Some(format!("run node in place of nodemon: {again}")),
        "node"
            if rest
                .iter()
                .any(|w| w == "--watch" || w.starts_with("--watch-path") || w.starts_with("--watch=")) =>
        {
            Some(format!("drop --watch from node: {again}"))
        }
        "bun" if has("--watch") || has("--hot") => Some(format!("drop --watch / --hot from bun: {again}")),
        "cargo-watch" => Some(
            "drop cargo watch: give devserve the build (-b 'cargo build') and the built binary (-- \
             target/debug/NAME); it rebuilds and restarts on every save"
                .into(),
        ),
        "air" => Some(
            "drop air: give devserve the build (-b 'go build -o bin/app .') and the binary (-- bin/app); it \
             rebuilds and restarts on every save"
                .into(),
        ),
        "watchexec" => Some(
            "drop watchexec and give devserve the command it wraps: devserve already watches and restarts it"
                .into(),
        ),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading commands and files

/// A shell command line's simple commands, each as words (quotes taken off; no expansion): cut
/// at `;`, `&`, `|` and newlines.
fn segments(script: &str) -> Vec<Vec<String>> {
    script
        .split([';', '&', '|', '\n'])
        .map(|part| {
            part.split_whitespace().map(|w| w.trim_matches(['"', '\'']).to_owned()).collect::<Vec<_>>()
        })
        .filter(|words| !words.is_empty())
        .collect()
}

/// The program a command runs and its arguments, past what only launches it: `VAR=value`,
/// `exec`, `env`, `npx`, `poetry run`, …; `python -m MODULE` is MODULE, `python FILE.py` is
/// FILE.py, `cargo watch` is `cargo-watch`. The program is a file name, without its folder.
fn program(words: &[String]) -> Option<(String, Vec<String>)> {
    let mut at = 0;
    while let Some(word) = words.get(at) {
        let next = words.get(at + 1).map(String::as_str);
        if is_assignment(word)
            || ["exec", "env", "nohup", "time", "npx", "bunx", "cross-env"].contains(&word.as_str())
        {
            at += 1;
        } else if (["poetry", "pipenv", "uv", "pdm", "hatch", "rye"].contains(&word.as_str())
            && next == Some("run"))
            || (["npm", "pnpm", "yarn"].contains(&word.as_str()) && matches!(next, Some("exec" | "dlx")))
        {
            at += 2;
        } else {
            break;
        }
    }
    let first = basename(words.get(at)?);
    let rest = &words[at + 1..];
    if first.starts_with("python") {
        return match rest {
            [flag, module, rest @ ..] if flag == "-m" => Some((module.clone(), rest.to_vec())),
            [file, rest @ ..] if file.ends_with(".py") => Some((basename(file).to_owned(), rest.to_vec())),
            _ => Some((first.to_owned(), rest.to_vec())),
        };
    }
    if first == "cargo" && rest.first().is_some_and(|w| w == "watch") {
        return Some(("cargo-watch".into(), rest[1..].to_vec()));
    }
    Some((first.to_owned(), rest.to_vec()))
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// A regular file of at most [`MAX_READ`] bytes, as text.
fn read_small(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_READ {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() { "it has none".into() } else { names.join(", ") }
}

/// A message on one line, at most 300 characters.
fn one_line(message: &str) -> String {
    let joined = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    match joined.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &joined[..cut]),
        None => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A folder under the system's temp dir, unique to the test, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("devserve-detect-{}-{name}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("create temp dir");
            TempDir(path.canonicalize().expect("canonical temp dir"))
        }

        fn write(&self, relative: &str, text: &str) -> &TempDir {
            let path = self.0.join(relative);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("create folders");
            std::fs::write(&path, text).expect("write file");
            self
        }

        fn mkdir(&self, relative: &str) -> &TempDir {
            std::fs::create_dir_all(self.0.join(relative)).expect("create folder");
            self
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn found(detection: Detection) -> Project {
        match detection {
            Detection::Found(project) => project,
            other => panic!("expected Found, got {other:?}"),
        }
    }

    fn strings(project: &Project, key: &str) -> Vec<String> {
        let value = project.setting(key).unwrap_or_else(|| panic!("no {key} in {project:?}"));
        match value {
            toml::Value::Array(items) => {
                items.iter().map(|v| v.as_str().expect("a string").to_owned()).collect()
            }
            toml::Value::String(text) => vec![text.clone()],
            other => panic!("{key} is {other:?}"),
        }
    }

    /// Declined, with `part` in why.
    fn assert_declined(dir: &Path, part: &str) {
        match detect(dir) {
            Detection::Declined { why, .. } => assert!(why.contains(part), "{why}"),
            other => panic!("expected Declined, got {other:?}"),
        }
    }

    fn keys(project: &Project) -> Vec<&'static str> {
        project.settings.iter().map(|f| f.key).collect()
    }

    fn from(project: &Project, key: &str) -> String {
        project.settings.iter().find(|f| f.key == key).map(|f| f.from.clone()).unwrap_or_default()
    }

    /// Where cargo puts the build when the test's environment sets none: `relative` under the
    /// project, or wherever `CARGO_TARGET_DIR` says (it wins over every config file).
    fn expected_target(relative: &str, bin: &str) -> String {
        match std::env::var("CARGO_TARGET_DIR") {
            Ok(dir) => format!("{dir}/debug/{bin}"),
            Err(_) => format!("{relative}/debug/{bin}"),
        }
    }

    fn manifest(name: &str, extra: &str) -> String {
        format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n{extra}")
    }

    #[test]
    fn cargo_package_with_one_binary() {
        let dir = TempDir::new("cargo-one");
        dir.write("Cargo.toml", &manifest("myapp", ""))
            .write("src/main.rs", "fn main() {}\n")
            .write("build.rs", "fn main() {}\n")
            .write("Cargo.lock", "version = 4\n")
            .mkdir("templates")
            .mkdir("target/debug");
        let project = found(detect(dir.path()));
        assert_eq!(project.kind, "a Cargo package (myapp)");
        assert_eq!(keys(&project), ["command", "watch", "build", "proxy"], "no ignore: {project:?}");
        assert_eq!(strings(&project, "command"), [expected_target("target", "myapp")]);
        assert_eq!(
            strings(&project, "watch"),
            ["src", "Cargo.toml", "build.rs", "templates"],
            "not Cargo.lock"
        );
        assert_eq!(strings(&project, "build"), ["cargo build"]);
        assert_eq!(strings(&project, "proxy"), [FRONT_DOOR]);
        assert!(from(&project, "command").contains("the package's only binary"), "{project:?}");
        assert!(from(&project, "command").contains("target directory"), "{project:?}");
        assert_eq!(from(&project, "proxy"), "the default front door");
        assert!(project.notes.iter().any(|n| n.contains("$PORT")), "{:?}", project.notes);

        // Run from inside the package's src: the same package, paths relative to there.
        let inner = found(detect(&dir.path().join("src")));
        assert_eq!(strings(&inner, "watch"), [".", "../Cargo.toml", "../build.rs", "../templates"]);
        assert!(std::path::Path::new(&strings(&inner, "command")[0]).is_absolute(), "{inner:?}");
    }

    #[test]
    fn cargo_default_run_chooses_among_two_binaries() {
        let dir = TempDir::new("cargo-default-run");
        dir.write("Cargo.toml", &manifest("shop", "default-run = \"server\"\n"))
            .write("src/bin/server.rs", "fn main() {}\n")
            .write("src/bin/admin.rs", "fn main() {}\n");
        let project = found(detect(dir.path()));
        assert_eq!(strings(&project, "command"), [expected_target("target", "server")]);
        assert_eq!(strings(&project, "build"), ["cargo build --bin server"]);
        assert!(from(&project, "command").contains("Cargo.toml's default-run"), "{project:?}");
        assert!(from(&project, "build").contains("2 binaries (--bin)"), "{project:?}");
    }

    #[test]
    fn cargo_two_binaries_without_default_are_ambiguous() {
        let dir = TempDir::new("cargo-two-bins");
        dir.write("Cargo.toml", &manifest("tools", ""))
            .write("src/bin/alpha.rs", "fn main() {}\n")
            .write("src/bin/beta.rs", "fn main() {}\n");
        match detect(dir.path()) {
            Detection::Ambiguous { kind, message } => {
                assert_eq!(kind, "a Cargo package (tools)");
                assert!(message.contains("alpha") && message.contains("beta"), "{message}");
                assert!(message.contains("--bin NAME") && message.contains("default-run"), "{message}");
            }
            other => panic!("expected Ambiguous, got {other:?}"),
        }
    }

    #[test]
    fn cargo_workspace_member_gets_p_and_its_path_dependencies() {
        let dir = TempDir::new("cargo-workspace");
        dir.write("Cargo.toml", "[workspace]\nmembers = [\"api\", \"core\"]\nresolver = \"2\"\n")
            .write("api/Cargo.toml", &manifest("api", "[dependencies]\ncore = { path = \"../core\" }\n"))
            .write("api/src/main.rs", "fn main() {}\n")
            .write("core/Cargo.toml", &manifest("core", ""))
            .write("core/src/lib.rs", "\n");
        let project = found(detect(&dir.path().join("api")));
        assert_eq!(project.kind, "a Cargo package (api, one of 2 workspace members)");
        assert_eq!(strings(&project, "build"), ["cargo build -p api"]);
        // The target directory is the workspace's, outside the member's folder: absolute.
        let target = match std::env::var("CARGO_TARGET_DIR") {
            Ok(dir) => format!("{dir}/debug/api"),
            Err(_) => text(&dir.path().join("target/debug/api")),
        };
        assert_eq!(strings(&project, "command"), [target]);
        assert_eq!(
            strings(&project, "watch"),
            ["src", "Cargo.toml", "../Cargo.toml", "../core/src", "../core/Cargo.toml"]
        );
        assert!(from(&project, "watch").contains("(core)"), "{project:?}");

        // At the virtual root, the only member with a binary.
        let root = found(detect(dir.path()));
        assert_eq!(strings(&root, "build"), ["cargo build -p api"]);
        assert_eq!(
            strings(&root, "watch"),
            ["api/src", "api/Cargo.toml", "Cargo.toml", "core/src", "core/Cargo.toml"]
        );
        assert!(from(&root, "command").contains("the workspace's only member with a binary"), "{root:?}");

        // A second member with a binary: the root cannot choose, the members still can.
        dir.write("Cargo.toml", "[workspace]\nmembers = [\"api\", \"core\", \"worker\"]\nresolver = \"2\"\n")
            .write("worker/Cargo.toml", &manifest("worker", ""))
            .write("worker/src/main.rs", "fn main() {}\n");
        match detect(dir.path()) {
            Detection::Ambiguous { message, .. } => {
                assert!(message.contains("api (api)") && message.contains("worker (worker)"), "{message}");
                assert!(!message.contains("core"), "{message}");
            }
            other => panic!("expected Ambiguous, got {other:?}"),
        }
        assert_eq!(strings(&found(detect(&dir.path().join("worker"))), "build"), ["cargo build -p worker"]);
    }

    #[test]
    fn cargo_target_dir_from_cargo_config_is_honoured() {
        let dir = TempDir::new("cargo-target-dir");
        dir.write("Cargo.toml", &manifest("outapp", ""))
            .write("src/main.rs", "fn main() {}\n")
            .write(".cargo/config.toml", "[build]\ntarget-dir = \"out\"\n");
        let project = found(detect(dir.path()));
        assert_eq!(strings(&project, "command"), [expected_target("out", "outapp")]);
    }

    #[test]
    fn cargo_library_is_declined_and_gives_way() {
        let dir = TempDir::new("cargo-lib");
        dir.write("Cargo.toml", &manifest("mylib", "")).write("src/lib.rs", "\n");
        match detect(dir.path()) {
            Detection::Declined { kind, why } => {
                assert_eq!(kind, "a Cargo package (mylib)");
                assert!(why.contains("no binary target"), "{why}");
            }
            other => panic!("expected Declined, got {other:?}"),
        }
        dir.write("package.json", r#"{"scripts": {"start": "node server.js"}}"#);
        let project = found(detect(dir.path()));
        assert_eq!(strings(&project, "command"), ["npm", "start"]);
        assert!(
            project.notes.iter().any(|n| n.starts_with("Cargo.toml: a Cargo package (mylib), not run")),
            "{project:?}"
        );
    }

    #[test]
    fn django_comes_before_package_json() {
        let dir = TempDir::new("django");
        dir.write("manage.py", "#!/usr/bin/env python\n")
            .write("package.json", r#"{"scripts": {"start": "node server.js"}}"#);
        let project = found(detect(dir.path()));
        assert_eq!(project.kind, "a Django project");
        assert_eq!(keys(&project), ["command", "watch", "ignore", "proxy"]);
        assert_eq!(
            strings(&project, "command"),
            ["python3", "manage.py", "runserver", "127.0.0.1:{port}", "--noreload"]
        );
        assert_eq!(strings(&project, "watch"), ["."]);
        assert_eq!(
            strings(&project, "ignore"),
            ["*.sqlite3", "__pycache__/**", ".venv/**", "venv/**", "media/**", "staticfiles/**"]
        );
        assert!(
            project.notes.iter().any(|n| n.starts_with("also here: package.json")),
            "{:?}",
            project.notes
        );
        assert_eq!(self_reloading(&strings(&project, "command")), None);
    }

    #[test]
    fn procfile_web_process() {
        let dir = TempDir::new("procfile");
        dir.write(
            "Procfile",
            "# processes\nworker: celery -A app worker\n\
             web: gunicorn app:app --bind 127.0.0.1:$PORT --reload\n",
        )
        .write("requirements.txt", "gunicorn\n");
        let project = found(detect(dir.path()));
        // Two processes: each a service, web at `/`; the worker (no $PORT) is not routed.
        let names: Vec<&str> = project.services.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["worker", "web"]);
        let web = &project.services[1].1;
        assert_eq!(
            web[0].value,
            toml::Value::Array(
                ["sh", "-c", "exec gunicorn app:app --bind 127.0.0.1:$PORT --reload"]
                    .map(|w| toml::Value::String(w.into()))
                    .to_vec()
            )
        );
        assert_eq!(web[1].key, "route");
        assert_eq!(project.services[0].1.len(), 1, "the worker has a command only");
        assert!(project.setting("command").is_none(), "the top level has no command: {project:?}");
        assert_eq!(strings(&project, "watch"), ["."]);
        assert_eq!(strings(&project, "ignore"), PYTHON_IGNORE);
        assert!(
            project.notes.iter().any(|n| n.contains("$PORT in the Procfile is devserve's")),
            "{project:?}"
        );
        assert!(project.notes.iter().any(|n| n.contains("drop --reload")), "{project:?}");

        // Assignments first, then exec.
        dir.write("Procfile", "web: FLASK_DEBUG=0  flask run --port $PORT\n");
        assert_eq!(
            strings(&found(detect(dir.path())), "command"),
            ["sh", "-c", "FLASK_DEBUG=0 exec flask run --port $PORT"]
        );
        // A list of commands is not exec'd (exec would end the list at its first command).
        dir.write("Procfile", "web: cd app && node server.js\n");
        let _ = std::fs::remove_file(dir.path().join("requirements.txt"));
        let project = found(detect(dir.path()));
        assert_eq!(strings(&project, "command"), ["sh", "-c", "cd app && node server.js"]);
        assert_eq!(project.setting("ignore"), None, "neither Python nor Node shows: {project:?}");
    }

    #[test]
    fn pyproject_fastapi_and_flask() {
        let dir = TempDir::new("fastapi");
        dir.write(
            "pyproject.toml",
            "[project]\nname = \"svc\"\ndependencies = [\"FastAPI>=0.110\", \"uvicorn[standard]\"]\n",
        )
        .write("main.py", "from fastapi import FastAPI\n\napi: FastAPI = FastAPI(title=\"svc\")\n");
        let project = found(detect(dir.path()));
        assert_eq!(project.kind, "a FastAPI app (pyproject.toml)");
        assert_eq!(
            strings(&project, "command"),
            ["python3", "-m", "uvicorn", "main:api", "--port", "{port}"]
        );
        assert_eq!(strings(&project, "ignore"), ["*.sqlite3", "__pycache__/**", ".venv/**", "venv/**"]);
        assert!(from(&project, "command").contains("`api = FastAPI(` in main.py"), "{project:?}");

        let dir = TempDir::new("flask");
        dir.write("pyproject.toml", "[tool.poetry.dependencies]\npython = \"^3.12\"\nFlask = \"^3\"\n")
            .write(
                "src/shop/app.py",
                "import flask\n\ndef helper():\n    x = flask.Flask('no')\n\napp = flask.Flask(__name__)\n",
            );
        let project = found(detect(dir.path()));
        assert_eq!(
            strings(&project, "command"),
            ["python3", "-m", "flask", "--app", "shop.app", "run", "--port", "{port}"]
        );
        assert!(project.notes.iter().any(|n| n.contains("pip install -e .")), "{project:?}");

        // The framework named but no app found: declined, with the command to give.
        let dir = TempDir::new("fastapi-factory");
        dir.write("pyproject.toml", "[project]\ndependencies = [\"fastapi\"]\n")
            .write("main.py", "def create():\n    app = FastAPI()\n    return app\n");
        assert_declined(dir.path(), "uvicorn MODULE:app");
    }

    #[test]
    fn node_start_script_and_main() {
        let dir = TempDir::new("node-start");
        dir.write("package.json", r#"{"scripts": {"start": "nodemon server.js"}, "main": "server.js"}"#);
        let project = found(detect(dir.path()));
        assert_eq!(project.kind, "a Node app (package.json start script)");
        assert_eq!(strings(&project, "command"), ["npm", "start"]);
        assert_eq!(strings(&project, "watch"), ["."]);
        assert_eq!(strings(&project, "ignore"), ["node_modules/**", "dist/**", ".next/**"]);
        assert!(project.notes.iter().any(|n| n.contains("run node in place of nodemon")), "{project:?}");

        dir.write("package.json", r#"{"main": "server.js"}"#).write("server.js", "\n");
        let project = found(detect(dir.path()));
        assert_eq!(strings(&project, "command"), ["node", "server.js"]);
    }

    #[test]
    fn node_bundler_dev_servers_are_supervised_services_never_swapped() {
        let dir = TempDir::new("node-vite");
        dir.write("package.json", r#"{"scripts": {"dev": "vite", "build": "vite build"}}"#);
        let project = found(detect(dir.path()));
        let (name, web) = &project.services[0];
        assert_eq!(name, "web");
        let value =
            |key: &str| web.iter().find(|f| f.key == key).map(|f| f.value.to_string()).unwrap_or_default();
        assert_eq!(value("command"), r#"["npm", "run", "dev", "--", "--port", "{port}", "--strictPort"]"#);
        assert_eq!(
            (value("route"), value("watch"), value("browser-reload")),
            ("\"/\"".into(), "[]".into(), "false".into())
        );
        // Next.js: `next start` serves a build, `next dev` is the dev server (on `-p`).
        dir.write("package.json", r#"{"scripts": {"dev": "next dev", "start": "next start"}}"#);
        let project = found(detect(dir.path()));
        assert!(project.services[0].1[0].value.to_string().contains(r#""-p", "{port}""#), "{project:?}");
        // A dev server whose port flag devserve does not know is still declined.
        dir.write("package.json", r#"{"scripts": {"dev": "parcel"}}"#);
        assert!(matches!(detect(dir.path()), Detection::Found(_)), "parcel takes --port");
        // An API started with node beside a vite front end: the API is run.
        dir.write("package.json", r#"{"scripts": {"dev": "vite", "start": "node api.js"}}"#);
        let project = found(detect(dir.path()));
        assert!(project.notes.iter().any(|n| n.contains("dev script runs `vite`")), "{project:?}");
        // One level of `npm run`.
        dir.write(
            "package.json",
            r#"{"scripts": {"start": "npm run serve", "serve": "webpack serve --hot"}}"#,
        );
        let project = found(detect(dir.path()));
        assert!(project.kind.contains("`webpack serve`"), "{project:?}");
    }

    #[test]
    fn go_module_with_main_package() {
        let dir = TempDir::new("go");
        dir.write("go.mod", "module example.com/hello\n\ngo 1.22\n")
            .write("main_test.go", "package main_test\n")
            .write("main.go", "// Hello serves.\npackage main\n\nfunc main() {}\n");
        let project = found(detect(dir.path()));
        assert_eq!(project.kind, "a Go module (example.com/hello)");
        assert_eq!(keys(&project), ["command", "watch", "ignore", "build", "proxy"]);
        assert_eq!(strings(&project, "command"), ["bin/devserve-app"]);
        assert_eq!(strings(&project, "build"), ["go build -o bin/devserve-app ."]);
        assert_eq!(strings(&project, "watch"), ["."]);
        assert_eq!(strings(&project, "ignore"), ["bin/**"]);
        assert!(from(&project, "build").contains("main.go"), "{project:?}");

        let dir = TempDir::new("go-cmd");
        dir.write("go.mod", "module example.com/tool\n").write("cmd/tool/main.go", "package main\n");
        assert_declined(dir.path(), "cmd/tool");
    }

    #[test]
    fn nothing_says_what_was_looked_for() {
        let dir = TempDir::new("nothing");
        dir.write("README.md", "hello\n");
        assert_eq!(
            detect(dir.path()),
            Detection::Nothing {
                looked_for:
                    "looked for Cargo.toml, manage.py, pyproject.toml, Procfile, package.json, go.mod".into()
            }
        );
        assert!(matches!(detect(&dir.path().join("missing")), Detection::Nothing { .. }));
    }

    #[test]
    fn self_reloading_names_what_to_change() {
        let argv = |line: &str| line.split_whitespace().map(String::from).collect::<Vec<_>>();
        let hint = |line: &str| self_reloading(&argv(line));
        let says = |line: &str, part: &str| {
            let hint = hint(line).unwrap_or_else(|| panic!("no hint for {line}"));
            assert!(hint.contains(part), "{line}: {hint}");
        };
        says("python3 manage.py runserver 127.0.0.1:8000", "add --noreload to runserver");
        says("django-admin runserver", "add --noreload");
        says("flask run --debug", "add --no-reload to flask run");
        says("python -m flask --app x run --reload", "drop --reload from flask run");
        says("uvicorn main:app --reload", "drop --reload");
        says("poetry run uvicorn main:app --reload-dir src", "from uvicorn");
        says("npx nodemon server.js", "run node in place of nodemon");
        says("node --watch server.js", "drop --watch from node");
        says("cargo watch -x run", "drop cargo watch");
        says("cargo-watch -x run", "drop cargo watch");
        says("air", "drop air");
        says("watchexec -r -- go run .", "drop watchexec");
        assert!(self_reloading(&["sh".into(), "-c".into(), "PORT=1 exec nodemon app.js".into()]).is_some());

        assert_eq!(hint("python3 manage.py runserver 127.0.0.1:{port} --noreload"), None);
        assert_eq!(hint("flask run --debug --no-reload"), None);
        assert_eq!(hint("flask run"), None);
        assert_eq!(hint("uvicorn main:app --port 8000"), None);
        assert_eq!(hint("node server.js"), None);
        assert_eq!(hint("target/debug/air-quality"), None);
        assert_eq!(self_reloading(&[]), None);
    }
}
