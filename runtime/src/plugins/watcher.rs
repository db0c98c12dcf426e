//! Watches the plugins directory (inotify on Linux, through `notify`), so a
//! file dropped in is served within milliseconds instead of at the next
//! periodic rescan. The periodic rescan stays as a safety net: events can be
//! lost (queue overflow, network file systems), rescans cannot.
//! [`follow`] runs both for a [`Registry`].

use super::Registry;
use super::scan::SETTLE;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// A running watcher; events arrive on `events` (one `()` per file-system
/// event; the rescan debounces them).
struct DirWatcher {
    /// Watching stops when this is dropped.
    pub watcher: notify::RecommendedWatcher,
    pub events: mpsc::UnboundedReceiver<()>,
}

/// Watch `dir` and everything below it; `None` (after a warning) when the
/// platform refuses, in which case only the periodic rescan runs.
fn watch(dir: &Path) -> Option<DirWatcher> {
    use notify::Watcher as _;
    let (tx, events) = mpsc::unbounded_channel();
    let shown = dir.display().to_string();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        match event {
            Ok(event) if relevant(&event) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            // Lost events are caught by the periodic rescan; say so.
            Err(e) => tracing::warn!("watching {shown}: {e}; the periodic rescan goes on"),
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(
                "cannot watch {}: {e}; rescanning periodically only",
                dir.display()
            );
            return None;
        }
    };
    if let Err(e) = watcher.watch(dir, notify::RecursiveMode::Recursive) {
        tracing::warn!(
            "cannot watch {}: {e}; rescanning periodically only",
            dir.display()
        );
        return None;
    }
    Some(DirWatcher { watcher, events })
}

/// Changes that can matter: files or directories created, removed, renamed
/// or written — not reads (a rescan's own reads must not trigger the next
/// rescan), and only for plugin files, manifests and directories.
fn relevant(event: &notify::Event) -> bool {
    use notify::EventKind;
    let kind = matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(_) | EventKind::Any
    ) && !matches!(
        event.kind,
        EventKind::Modify(notify::event::ModifyKind::Metadata(
            notify::event::MetadataKind::AccessTime
        ))
    );
    kind && event.paths.iter().any(|p| {
        match p.extension().and_then(|e| e.to_str()) {
            Some("wasm" | "toml") => true,
            Some(_) => false,
            None => true, // a directory (a tenant) or an extension-less rename target
        }
    })
}

/// Rescan `registry`'s directory on file-system events (debounced: 50 ms
/// without a new event, at most 250 ms) and every `every` in any case,
/// until `stop` turns true. Event-driven rescans leave files changed in the
/// last moments for a recheck shortly after (see
/// [`Registry::refresh_settled`]), so a file still being written is not
/// loaded half; the periodic one loads whatever is there (a half-written
/// file is then rejected and retried when it changes again).
///
/// The directory is watched from the call on, before the returned future
/// first runs, so no change made after the call is missed.
pub fn follow(
    registry: Arc<Registry>,
    every: Duration,
    stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> {
    let watcher = watch(registry.dir());
    rescan_loop(registry, every, watcher, stop)
}

async fn rescan_loop(
    registry: Arc<Registry>,
    every: Duration,
    watcher: Option<DirWatcher>,
    mut stop: watch::Receiver<bool>,
) {
    let (_watching, mut events) = match watcher {
        Some(w) => (Some(w.watcher), Some(w.events)),
        None => (None, None),
    };
    // The periodic rescan has its own timer: a stream of events (a tenant
    // writing files all the time) cannot hold it off.
    let mut periodic = tokio::time::interval(every);
    periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    periodic.tick().await;
    let mut recheck = false;
    loop {
        let settle = if recheck {
            SETTLE
        } else {
            Duration::from_secs(3600)
        };
        let settled = tokio::select! {
            _ = periodic.tick() => false,
            () = tokio::time::sleep(settle) => true,
            Some(()) = next_event(&mut events) => {
                debounce(&mut events).await;
                true
            }
            _ = stop.changed() => break,
        };
        let r = Arc::clone(&registry);
        recheck = tokio::task::spawn_blocking(move || {
            if settled {
                r.refresh_settled();
                r.has_unsettled()
            } else {
                r.refresh();
                false
            }
        })
        .await
        .unwrap_or(false);
    }
}

/// Let a burst of events pass (a copy or a build writes in many steps):
/// until 50 ms pass without one, but never longer than 250 ms.
async fn debounce(events: &mut Option<mpsc::UnboundedReceiver<()>>) {
    let until = tokio::time::Instant::now() + Duration::from_millis(250);
    while let Ok(Some(())) = tokio::time::timeout_at(
        until.min(tokio::time::Instant::now() + Duration::from_millis(50)),
        next_event(events),
    )
    .await
    {}
}

async fn next_event(events: &mut Option<mpsc::UnboundedReceiver<()>>) -> Option<()> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
