//! The file trees of the poll-cost and first-serve sections: `N` files as
//! `d000/s000/f0.txt` … (folders of 10 files, 100 folders per top folder), made on first use,
//! shared by every tool and section that asks for the same size, and removed by [`remove_all`]
//! at the end of the run.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::common::TempDir;

const SUBS: usize = 100;
const FILES: usize = 10;

/// A tree of `files` files in `tops` × 100 folders (plus the `tops` top folders and the root).
pub struct Tree {
    root: TempDir,
    pub files: usize,
    pub tops: usize,
}

impl Tree {
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Folders in the tree, the root included.
    pub fn folders(&self) -> usize {
        1 + self.tops * (1 + SUBS)
    }

    /// `--ignore` glob that leaves the first tenth of the top folders (`d000`–`d009` of 100) and
    /// ignores the other 90%: matched against the path relative to the root, so it names the top
    /// folders themselves, and nothing below them is walked or polled.
    pub fn ignore_90_percent(&self) -> Result<&'static str, String> {
        match self.tops {
            100 => Ok("d0[1-9]?"),
            n => Err(format!("no 90% ignore glob for a tree of {n} top folders (bench bug)")),
        }
    }

    fn create(files: usize) -> Result<Tree, String> {
        let tops = files / (SUBS * FILES);
        if tops == 0 || tops > 1000 || !files.is_multiple_of(SUBS * FILES) {
            return Err(format!("no tree of {files} files (bench bug)"));
        }
        let fail = |e: std::io::Error| format!("cannot create the {files}-file tree: {e}");
        let tree = Tree { root: TempDir::new(&format!("bench-tree{files}")), files, tops };
        let began = Instant::now();
        for top in 0..tops {
            for sub in 0..SUBS {
                let dir = tree.root.join(format!("d{top:03}/s{sub:03}"));
                std::fs::create_dir_all(&dir).map_err(fail)?;
                for file in 0..FILES {
                    std::fs::write(dir.join(format!("f{file}.txt")), b"tree\n").map_err(fail)?;
                }
            }
        }
        eprintln!(
            "[bench] tree: {files} files in {} folders at {} ({:.1}s)",
            tree.folders(),
            tree.root.display(),
            began.elapsed().as_secs_f64()
        );
        Ok(tree)
    }
}

static TREES: Mutex<Vec<Arc<Tree>>> = Mutex::new(Vec::new());

/// The tree of `files` files, made now unless an earlier section made it.
pub fn get(files: usize) -> Result<Arc<Tree>, String> {
    let mut trees = TREES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(tree) = trees.iter().find(|tree| tree.files == files) {
        return Ok(tree.clone());
    }
    let tree = Arc::new(Tree::create(files)?);
    trees.push(tree.clone());
    Ok(tree)
}

/// Removes every tree (their `TempDir`s go with the last reference).
pub fn remove_all() {
    let trees = std::mem::take(&mut *TREES.lock().unwrap_or_else(PoisonError::into_inner));
    if !trees.is_empty() {
        eprintln!("[bench] removing {} tree(s)", trees.len());
    }
}
