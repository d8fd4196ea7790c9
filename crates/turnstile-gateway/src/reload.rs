//! Reloading without a restart: the rule files on a change in `rls.config_dir` (a file
//! written, added or removed; the `..data` symlink of a Kubernetes ConfigMap swapped; the
//! directory itself replaced through a symlink), the TOML file's `policies` on a change to that
//! file, and both on `SIGHUP`.
//!
//! Watched with `notify` (inotify on Linux). Events are coalesced (a burst of writes is one
//! reload, after [`SETTLE`] of quiet) so a half-written file is seldom read, and a file that
//! does not load only ever keeps what is in force.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Quiet time after the last change before reloading.
pub(crate) const SETTLE: Duration = Duration::from_millis(100);

/// The watchers and the channels they report on, set up before the gateway serves (so a
/// change made as soon as it answers is not missed), then driven by [`Reloader::run`].
pub(crate) struct Reloader {
    state: Arc<AppState>,
    rules_dir: Option<PathBuf>,
    rules_changed: mpsc::Sender<()>,
    rules_changes: mpsc::Receiver<()>,
    rules_watcher: Option<notify::RecommendedWatcher>,
    policies_changed: mpsc::Sender<()>,
    policies_changes: mpsc::Receiver<()>,
    policies_watcher: Option<notify::RecommendedWatcher>,
}

impl Reloader {
    /// Starts watching the rule directory and the configuration file `state` knows of.
    pub(crate) fn start(state: Arc<AppState>) -> Self {
        // Capacity 1: a pending reload already covers any change that arrives before it runs.
        let (rules_changed, rules_changes) = mpsc::channel::<()>(1);
        let (policies_changed, policies_changes) = mpsc::channel::<()>(1);
        let rules_dir = state.rules_dir().map(Path::to_owned);
        let rules_watcher = rules_dir
            .as_deref()
            .and_then(|dir| watch_rules(dir, &rules_changed));
        let policies_watcher = state.config_file().and_then(|file| {
            // The file's entry in its directory (editors replace files by renaming), and a
            // ConfigMap's `..data` link swapped under it.
            let names = file
                .file_name()
                .map(ToOwned::to_owned)
                .into_iter()
                .chain([OsString::from("..data")])
                .collect();
            let dir = file
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            start_watching(dir, None, names, policies_changed.clone())
        });
        Self {
            state,
            rules_dir,
            rules_changed,
            rules_changes,
            rules_watcher,
            policies_changed,
            policies_changes,
            policies_watcher,
        }
    }

    /// Reloads on change and on `SIGHUP` until `stopping` is cancelled.
    pub(crate) async fn run(mut self, stopping: CancellationToken) {
        if self.rules_dir.is_none() && self.state.config_file().is_none() {
            return;
        }
        listen_for_hangup(
            &stopping,
            [self.rules_changed.clone(), self.policies_changed.clone()],
        );
        let _policies_watcher = self.policies_watcher.take();
        loop {
            tokio::select! {
                () = stopping.cancelled() => break,
                Some(()) = self.rules_changes.recv() => {
                    settle(&mut self.rules_changes).await;
                    // Watch afresh first (a directory swapped by symlink is watched at its new
                    // target), then reload: a change after the new watch starts triggers
                    // another reload, one before it is in this one.
                    let renewed = self
                        .rules_dir
                        .as_deref()
                        .and_then(|dir| watch_rules(dir, &self.rules_changed));
                    let _ = self.state.reload_rules();
                    self.rules_watcher = renewed;
                }
                Some(()) = self.policies_changes.recv() => {
                    settle(&mut self.policies_changes).await;
                    let _ = self.state.reload_policies();
                }
            }
        }
    }
}

/// Watches the rule directory, and its own entry in its parent (a directory swapped by
/// symlink).
fn watch_rules(dir: &Path, changed: &mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let names: Vec<OsString> = dir.file_name().map(ToOwned::to_owned).into_iter().collect();
    start_watching(dir, dir.parent(), names, changed.clone())
}

/// Waits until no event has arrived for [`SETTLE`].
async fn settle(changes: &mut mpsc::Receiver<()>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(SETTLE) => break,
            more = changes.recv() => if more.is_none() { break },
        }
    }
}

/// `SIGHUP` asks every `changed` for a reload.
fn listen_for_hangup<const N: usize>(stopping: &CancellationToken, changed: [mpsc::Sender<()>; N]) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hangup) => {
                let stopping = stopping.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            () = stopping.cancelled() => break,
                            received = hangup.recv() => {
                                if received.is_none() { break; }
                                tracing::info!("SIGHUP: reloading the rules and the policies");
                                for changed in &changed {
                                    let _ = changed.try_send(());
                                }
                            }
                        }
                    }
                });
            }
            Err(error) => tracing::error!(%error, "cannot listen for SIGHUP"),
        }
    }
}

/// Watches `dir` (every event in it counts) and, if given, `parent` (only events on entries
/// named in `names` count; with no parent, `names` filters `dir`'s own events instead).
fn start_watching(
    dir: &Path,
    parent: Option<&Path>,
    names: Vec<OsString>,
    changed: mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    let dir_owned: PathBuf = dir.to_owned();
    let filter_dir = parent.is_none();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let named = |path: &Path| {
            path.file_name()
                .is_some_and(|name| names.iter().any(|wanted| wanted == name))
        };
        let relevant = event.paths.iter().any(|path| {
            let inside = path.parent() == Some(dir_owned.as_path());
            if filter_dir {
                inside && named(path)
            } else {
                inside || named(path)
            }
        });
        if relevant {
            let _ = changed.try_send(());
        }
    };
    let result = notify::recommended_watcher(handler).and_then(|mut watcher| {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        if let Some(parent) = parent.filter(|parent| !parent.as_os_str().is_empty()) {
            // Best effort: a parent that cannot be watched only loses the symlink-swap case.
            let _ = watcher.watch(parent, RecursiveMode::NonRecursive);
        }
        Ok(watcher)
    });
    match result {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::error!(path = %dir.display(), %error, "cannot watch for changes; SIGHUP still reloads");
            None
        }
    }
}
