//! The worker's side of fleet deploys. Before the first claim it loads every
//! version pinned in the fleet store; then it blocks on the store's events
//! (so a deploy or a rollback reaches every worker within milliseconds, with
//! a full resync every few seconds as a safety net), records the versions it
//! loads from its directory in their plugin's history, and publishes what it
//! serves for `spool plugins list`.

use super::registry::Registry;
use crate::deploy::{DeployError, MAX_DEPLOY_BYTES, Recorded, Store, WorkerStatus};
use crate::plugins::safe_read;
use crate::queue::{PluginName, now_us};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long one blocking wait for pin events lasts.
const WAIT: Duration = Duration::from_secs(1);

/// How often the pins are read whole even without events, and the report
/// refreshed (well inside its TTL).
const RESYNC: Duration = Duration::from_secs(5);

/// One worker's link to the fleet store.
pub(crate) struct Fleet {
    store: Store,
    registry: Arc<Registry>,
    worker: String,
    /// Directory versions recorded in the history: name → digest.
    recorded: HashMap<PluginName, String>,
}

impl Fleet {
    pub(crate) fn new(store: Store, registry: Arc<Registry>, worker: String) -> Self {
        Fleet {
            store,
            registry,
            worker,
            recorded: HashMap::new(),
        }
    }

    /// Make the pinned versions this worker serves match the store's pins:
    /// load new ones (off the async threads), drop removed ones.
    pub(crate) async fn sync(&self) -> Result<(), DeployError> {
        let pins = self.store.pinned().await?;
        for name in self.registry.pinned_names() {
            if !pins.contains_key(&name) {
                self.registry.unpin(&name);
            }
        }
        for (name, entry) in pins {
            if self.registry.pin_is_settled(&name, &entry) {
                continue;
            }
            let bytes = match self.store.blob(&name, &entry.digest).await {
                Ok(bytes) => bytes,
                Err(e @ (DeployError::BlobMissing { .. } | DeployError::Corrupt { .. })) => {
                    tracing::warn!(plugin = %name, "pinned version unusable: {e}");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let registry = Arc::clone(&self.registry);
            // A refusal is logged and kept by the registry for the report.
            let _ = tokio::task::spawn_blocking(move || registry.pin(&name, &entry, &bytes)).await;
        }
        Ok(())
    }

    /// Record directory versions not recorded yet (the bytes go to the
    /// store once per version, so that any worker can be rolled back to it).
    async fn record_directory(&mut self) {
        for version in self.registry.directory_versions() {
            if self.recorded.get(&version.name) == Some(&version.version) {
                continue;
            }
            let path = version.path.clone();
            let read = tokio::task::spawn_blocking(move || {
                safe_read::read_regular(&path, MAX_DEPLOY_BYTES, false)
            })
            .await;
            let Ok(Ok((bytes, _))) = read else {
                // Gone or too big to record; the rescan deals with the file.
                self.recorded.insert(version.name, version.version);
                continue;
            };
            if blake3::hash(&bytes).to_hex().as_str() != version.version {
                continue; // changed since it was loaded: the rescan reloads it
            }
            let by = format!("worker {}: {}", self.worker, version.path.display());
            match self
                .store
                .record_directory(&version.name, &bytes, version.sdk, version.manifest, &by)
                .await
            {
                Ok(recorded) => {
                    if recorded == Recorded::New {
                        tracing::info!(plugin = %version.name, version = %&version.version[..12], "version recorded in the plugin's history");
                    }
                    self.recorded.insert(version.name, version.version);
                }
                Err(e @ DeployError::TooLarge { .. }) => {
                    tracing::warn!("not recorded in the history: {e}");
                    self.recorded.insert(version.name, version.version);
                }
                Err(e) => {
                    tracing::warn!(plugin = %version.name, "recording the version failed: {e}")
                }
            }
        }
    }

    /// Publish what this worker serves and refuses.
    async fn report(&self) -> Result<(), DeployError> {
        self.store
            .report(&WorkerStatus {
                worker: self.worker.clone(),
                dir: self.registry.dir().display().to_string(),
                reported_us: now_us(),
                plugins: self.registry.serving(),
                rejected: self.registry.refusals(),
            })
            .await
    }
}

/// Follow the store until `stop` turns true, then withdraw the report.
pub(crate) async fn fleet_loop(mut fleet: Fleet, mut stop: watch::Receiver<bool>) {
    let mut conn = None;
    let mut after = String::new();
    let mut reported: Option<u64> = None;
    let mut last_sync = Instant::now();
    let mut backoff = Duration::from_millis(100);
    while !*stop.borrow() {
        if conn.is_none() {
            // (Re)connected: events may have been missed; read the pins whole.
            let ready = async {
                let c = fleet.store.blocking_connection().await?;
                let id = fleet.store.last_event().await?;
                fleet.sync().await?;
                Ok::<_, DeployError>((c, id))
            }
            .await;
            match ready {
                Ok((c, id)) => {
                    conn = Some(c);
                    after = id;
                    last_sync = Instant::now();
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    tracing::warn!("fleet store: {e}; retrying in {}ms", backoff.as_millis());
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let event = tokio::select! {
            r = fleet.store.wait_event(c, &after, WAIT) => r,
            _ = stop.changed() => break,
        };
        let resync = match event {
            Ok(Some(id)) => {
                after = id;
                true
            }
            Ok(None) => last_sync.elapsed() >= RESYNC,
            Err(e) => {
                tracing::warn!("fleet store: {e}");
                conn = None;
                continue;
            }
        };
        if resync {
            last_sync = Instant::now();
            if let Err(e) = fleet.sync().await {
                tracing::warn!("fleet store: {e}");
                conn = None;
                continue;
            }
        }
        fleet.record_directory().await;
        let generation = fleet.registry.generation();
        if reported != Some(generation) || resync {
            match fleet.report().await {
                Ok(()) => reported = Some(generation),
                Err(e) => tracing::warn!("fleet store: {e}"),
            }
        }
    }
    let _ = fleet.store.withdraw(&fleet.worker).await;
}
