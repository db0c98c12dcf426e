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
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
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
