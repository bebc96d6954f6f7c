//! Watches the directories of the plugin files and the config file, and reports changed paths.
//!
//! Directories, not files, are watched, so an atomic `mv new.wasm plugin.wasm` is seen (a
//! watch on the file would stay on the replaced inode). Events are debounced, so a `cp` that
//! writes in several chunks is reported once, after it is done.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

/// How long a file must be quiet before its change is reported.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

/// A running watcher; dropping it stops watching.
pub struct Watcher {
    debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
    dirs: BTreeSet<PathBuf>,
}

impl Watcher {
    /// Starts a watcher that sends each batch of changed paths to `changes`.
    pub fn new(changes: mpsc::UnboundedSender<Vec<PathBuf>>) -> anyhow::Result<Self> {
        let debouncer =
            new_debouncer(
                DEBOUNCE,
                None,
                move |result: DebounceEventResult| match result {
                    Ok(events) => {
                        let paths: Vec<PathBuf> = events
                            .into_iter()
                            .filter(|e| !e.kind.is_access())
                            .flat_map(|e| e.event.paths)
                            .collect();
                        if !paths.is_empty() {
                            let _ = changes.send(paths);
                        }
                    }
                    Err(errors) => {
                        for error in errors {
                            tracing::warn!(%error, "file watch error");
                        }
                    }
                },
            )
            .context("cannot start the file watcher")?;
        Ok(Self {
            debouncer,
            dirs: BTreeSet::new(),
        })
    }

    /// Watches the directory of each file (once per directory).
    pub fn watch_files<'a>(&mut self, files: impl IntoIterator<Item = &'a Path>) {
        for file in files {
            let Some(dir) = file.parent() else { continue };
            if self.dirs.contains(dir) {
                continue;
            }
            match self.debouncer.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.dirs.insert(dir.to_path_buf());
                }
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "cannot watch directory; changes there need a SIGHUP")
                }
            }
        }
    }
}
