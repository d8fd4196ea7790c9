//! Reloading the rules without a restart: on `SIGHUP`, and when `rls.config_dir` changes (a
//! file written, added or removed; the `..data` symlink of a Kubernetes ConfigMap swapped; the
//! directory itself replaced through a symlink).
//!
//! The directory and its parent are watched with `notify` (inotify on Linux); events are
//! coalesced (a burst of writes is one reload, after [`SETTLE`] of quiet) so a half-written
//! file is seldom read, and a file that does not parse only ever keeps the old rules in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Quiet time after the last change before reloading.
pub(crate) const SETTLE: Duration = Duration::from_millis(100);

/// Watches the rule directory (when there is one) and `SIGHUP`, reloading the rules into
/// `state` until `stopping` is cancelled.
pub(crate) async fn run(state: Arc<AppState>, stopping: CancellationToken) {
    let Some(dir) = state.rules_dir().map(Path::to_owned) else {
        return;
    };
    // Capacity 1: a pending reload already covers any change that arrives before it runs.
    let (changed, mut changes) = mpsc::channel::<()>(1);
    let start_watching = || match watch(&dir, changed.clone()) {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            tracing::error!(dir = %dir.display(), %error, "cannot watch the rule directory; SIGHUP still reloads");
            None
        }
    };
    let mut watcher = start_watching();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hangup) => {
                let changed = changed.clone();
                let stopping = stopping.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            () = stopping.cancelled() => break,
                            received = hangup.recv() => {
                                if received.is_none() { break; }
                                tracing::info!("SIGHUP: reloading the rules");
                                let _ = changed.try_send(());
                            }
                        }
                    }
                });
            }
            Err(error) => tracing::error!(%error, "cannot listen for SIGHUP"),
        }
    }
    loop {
        tokio::select! {
            () = stopping.cancelled() => break,
            received = changes.recv() => {
                if received.is_none() { break; }
                // Let a burst of events settle into one reload.
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(SETTLE) => break,
                        more = changes.recv() => if more.is_none() { break },
                    }
                }
                let _ = state.reload_rules();
                // Watch afresh: if the directory was a symlink that now points elsewhere, the
                // old watch follows the old target.
                drop(watcher.take());
                watcher = start_watching();
            }
        }
    }
}

/// A watcher sending on `changed` for every event in `dir` or on `dir` itself (seen from its
/// parent, so a directory replaced through a symlink is noticed too).
fn watch(dir: &Path, changed: mpsc::Sender<()>) -> notify::Result<notify::RecommendedWatcher> {
    let name = dir.file_name().map(ToOwned::to_owned);
    let parent: Option<PathBuf> = dir.parent().map(Path::to_owned);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        let relevant = event.paths.iter().any(|path| {
            // Either inside the directory, or the directory's own entry in its parent.
            path.parent()
                .is_some_and(|parent| parent.file_name() == name.as_deref())
                || path.file_name() == name.as_deref()
        });
        if relevant {
            let _ = changed.try_send(());
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    if let Some(parent) = parent.filter(|parent| !parent.as_os_str().is_empty()) {
        // Best effort: a parent that cannot be watched only loses the symlink-swap case.
        let _ = watcher.watch(&parent, RecursiveMode::NonRecursive);
    }
    Ok(watcher)
}
