//! Watches the plugins directory (inotify on Linux, through `notify`), so a
//! file dropped in is served within milliseconds instead of at the next
//! periodic rescan. The periodic rescan stays as a safety net: events can be
//! lost (queue overflow, network file systems), rescans cannot.

use std::path::Path;
use tokio::sync::mpsc;

/// A running watcher; events arrive on `events` (one `()` per file-system
/// event; the rescan debounces them).
pub(super) struct DirWatcher {
    /// Watching stops when this is dropped.
    pub watcher: notify::RecommendedWatcher,
    pub events: mpsc::UnboundedReceiver<()>,
}

/// Watch `dir` and everything below it; `None` (after a warning) when the
/// platform refuses, in which case only the periodic rescan runs.
pub(super) fn watch(dir: &Path) -> Option<DirWatcher> {
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
