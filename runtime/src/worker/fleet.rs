//! The worker's side of fleet deploys. Before the first claim it loads every
//! version pinned in the fleet store; then it blocks on the store's events
//! (so a deploy or a rollback reaches every worker within milliseconds, with
//! a full resync every few seconds as a safety net), records the versions it
//! loads from its directory in their plugin's history, and publishes what it
//! serves for `spool plugins list`. Redis trouble is logged and retried; it
//! never stops the loop.

use super::registry::Registry;
use crate::cache::{ResultCache, Scope};
use crate::deploy::{DeployError, MAX_DEPLOY_BYTES, Recorded, Store, WorkerStatus};
use crate::plugins::safe_read;
use crate::queue::{PluginName, now_us};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// How long one blocking wait for pin events lasts.
const WAIT: Duration = Duration::from_secs(1);

/// A wait that has not answered this long after its own timeout is on a
/// dead connection: reconnect.
const WAIT_SLACK: Duration = Duration::from_secs(5);

/// How often the pins are read whole even without events, and the report
/// refreshed (well inside its TTL).
const RESYNC: Duration = Duration::from_secs(5);

/// Where the fleet store is.
pub(crate) struct FleetConfig {
    pub url: String,
    pub prefix: String,
    pub worker: String,
    /// Purge events drop entries from its memory.
    pub cache: Option<Arc<ResultCache>>,
}

/// One worker's link to the fleet store.
struct Fleet {
    store: Store,
    registry: Arc<Registry>,
    worker: String,
    /// Directory versions recorded in the history (or that cannot be):
    /// name → digest.
    recorded: HashMap<PluginName, String>,
}

impl Fleet {
    /// Make the pinned versions this worker serves match the store's pins:
    /// load new ones (off the async threads), drop removed ones.
    async fn sync(&self) -> Result<(), DeployError> {
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
                    self.registry.refuse_pin(&name, &entry, e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            let registry = Arc::clone(&self.registry);
            let (n, e) = (name.clone(), entry.clone());
            // A refusal is kept by the registry for the report.
            let loaded = tokio::task::spawn_blocking(move || registry.pin(&n, &e, &bytes)).await;
            if loaded.is_err() {
                let why = "loading it panicked in the host (a bug: please report it)".to_string();
                self.registry.refuse_pin(&name, &entry, why);
            }
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
                Err(e) => {
                    tracing::warn!(plugin = %version.name, "recording the version in its history failed: {e}");
                    // Retry later only what a retry can fix.
                    if !e.is_retryable() {
                        self.recorded.insert(version.name, version.version);
                    }
                }
            }
        }
    }

    /// Publish what this worker serves and refuses, and the last event it
    /// acted on.
    async fn report(&self, events_seen: &str) -> Result<(), DeployError> {
        self.store
            .report(&WorkerStatus {
                worker: self.worker.clone(),
                dir: self.registry.dir().display().to_string(),
                reported_us: now_us(),
                plugins: self.registry.serving(),
                rejected: self.registry.refusals(),
                events_seen: events_seen.to_string(),
            })
            .await
    }
}

/// Drop what a cache purge named from this worker's memory.
fn purge(cache: Option<&ResultCache>, scope: &str) {
    let Some(cache) = cache else { return };
    match serde_json::from_str::<Scope>(scope) {
        Ok(scope) => cache.invalidate(&scope),
        Err(e) => {
            // Safer to forget too much than to serve what was purged.
            tracing::warn!("unreadable purge event ({e}): dropping the whole memory tier");
            cache.invalidate(&Scope::default());
        }
    }
}

/// Follow the store until `stop` turns true, then withdraw the report.
/// `ready` is sent after the first full sync of the pins.
pub(crate) async fn fleet_loop(
    config: FleetConfig,
    registry: Arc<Registry>,
    ready: oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ready = Some(ready);
    let mut fleet: Option<Fleet> = None;
    let mut conn = None;
    let mut after = String::new();
    let mut reported: Option<u64> = None;
    let mut last_sync = Instant::now();
    let mut backoff = Duration::from_millis(100);
    while !*stop.borrow() {
        if conn.is_none() {
            // (Re)connected: events may have been missed; read the pins whole.
            let connected = async {
                let store = match &fleet {
                    Some(f) => f.store.clone(),
                    None => Store::connect(&config.url, &config.prefix).await?,
                };
                let c = store.blocking_connection().await?;
                let id = store.last_event().await?;
                Ok::<_, DeployError>((store, c, id))
            }
            .await;
            let synced = match connected {
                Ok((store, c, id)) => {
                    let f = fleet.get_or_insert_with(|| Fleet {
                        store,
                        registry: Arc::clone(&registry),
                        worker: config.worker.clone(),
                        recorded: HashMap::new(),
                    });
                    f.sync().await.map(|()| (c, id))
                }
                Err(e) => Err(e),
            };
            match synced {
                Ok((c, id)) => {
                    conn = Some(c);
                    after = id;
                    last_sync = Instant::now();
                    backoff = Duration::from_millis(100);
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                    // Purge events may have passed while we were away: what
                    // the memory tier holds may have been purged.
                    if let Some(cache) = &config.cache {
                        cache.invalidate(&Scope::default());
                    }
                    // Say at once what this worker serves.
                    if let Some(f) = fleet.as_mut() {
                        f.record_directory().await;
                        let generation = f.registry.generation();
                        if f.report(&after).await.is_ok() {
                            reported = Some(generation);
                        }
                    }
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
        let (Some(f), Some(c)) = (fleet.as_mut(), conn.as_mut()) else {
            continue;
        };
        let event = tokio::select! {
            r = tokio::time::timeout(WAIT + WAIT_SLACK, f.store.wait_event(c, &after, WAIT)) => r,
            _ = stop.changed() => break,
        };
        let mut purged = false;
        let resync = match event {
            Ok(Ok(events)) if !events.is_empty() => {
                let mut pins = false;
                for event in events {
                    after = event.id;
                    match event.purge {
                        Some(scope) => {
                            purge(config.cache.as_deref(), &scope);
                            purged = true;
                        }
                        None => pins = true,
                    }
                }
                pins || last_sync.elapsed() >= RESYNC
            }
            Ok(Ok(_)) => last_sync.elapsed() >= RESYNC,
            Ok(Err(e)) => {
                tracing::warn!("fleet store: {e}");
                conn = None;
                continue;
            }
            Err(_) => {
                tracing::warn!("fleet store: no answer to a wait for events; reconnecting");
                conn = None;
                continue;
            }
        };
        if resync {
            last_sync = Instant::now();
            if let Err(e) = f.sync().await {
                tracing::warn!("fleet store: {e}");
                conn = None;
                continue;
            }
        }
        f.record_directory().await;
        let generation = f.registry.generation();
        if reported != Some(generation) || resync || purged {
            match f.report(&after).await {
                Ok(()) => reported = Some(generation),
                Err(e) => tracing::warn!("fleet store: {e}"),
            }
        }
    }
    if let Some(f) = fleet {
        let _ = f.store.withdraw(&f.worker).await;
    }
}
