//! devserve: rebuild and swap a server on every save, without ever refusing a connection.
//!
//! The modules form layers; each uses only the layers below it (no cycles):
//!
//! 1. [`app`]: one invocation, from arguments to exit status.
//! 2. [`supervisor`]: the one loop that owns all state and decides (policy), with its effects
//!    behind [`procs`].
//! 3. [`cli`], [`config`]: the settings — every option declared once, parsed and validated into
//!    the [`config::Config`] the supervisor runs with.
//! 4. [`generation`], [`build`], [`procs`]: a set of workers, a build, the process table.
//! 5. [`spawn`], [`sockets`], [`readiness`], [`watch`], [`signals`], [`keys`], [`sentinel`],
//!    [`runtime`], [`control`], [`proxy`], [`ports`]: one OS concern each; [`detect`]: what a
//!    folder holds and how devserve would run it (zero-config).
//! 6. [`event`], [`output`]: the messages the threads send the supervisor, and what devserve
//!    prints.

pub mod app;
pub mod build;
pub mod cli;
pub mod config;
pub mod control;
pub mod detect;
pub mod event;
pub mod generation;
pub mod keys;
pub mod output;
pub mod ports;
pub mod procs;
pub mod proxy;
pub mod readiness;
pub mod runtime;
pub mod sentinel;
pub mod signals;
pub mod sockets;
pub mod spawn;
pub mod supervisor;
pub mod watch;

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
    }
}
