//! The worker's side of fleet deploys. Before the first claim it loads every
//! version pinned in the fleet store; then it blocks on the store's events
//! (so a deploy or a rollback reaches every worker within milliseconds, with
//! a full resync every few seconds as a safety net), records the versions it
//! loads from its directory in their plugin's history, and publishes what it
//! serves for `spool plugins list`. Redis trouble is logged and retried; it
//! never stops the loop.

use super::watchdog::Watch;
use crate::cache::{ResultCache, Scope};
use crate::deploy::{DeployError, Event, FleetStore, MAX_DEPLOY_BYTES, Recorded, WorkerStatus};
use crate::ids::{PluginName, Version, now_us};
use crate::plugins::{Registry, safe_read};
use crate::redis::Conn;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long one blocking wait for pin events lasts.
const WAIT: Duration = Duration::from_secs(1);

/// A wait that has not answered this long after its own timeout is on a
/// dead connection: reconnect.
const WAIT_SLACK: Duration = Duration::from_secs(5);

/// Where the fleet store is.
#[derive(Clone)]
pub(crate) struct FleetConfig {
    pub url: String,
    pub prefix: String,
    pub worker: String,
    /// Purge events drop entries from its memory.
    pub cache: Option<Arc<ResultCache>>,
    /// How often the pins are read whole even without events, and the
    /// report refreshed ([`super::WorkerConfig::fleet_resync`]).
    pub resync: Duration,
    /// The job threads: wedged ones are reported.
    pub watch: Arc<Watch>,
    /// Jobs in flight, for the report.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// When the worker started (µs since the epoch).
    pub started_us: u64,
}

/// One worker's link to the fleet store.
struct Fleet {
    store: FleetStore,
    registry: Arc<Registry>,
    worker: String,
    watch: Arc<Watch>,
    metrics: Arc<crate::metrics::Metrics>,
    started_us: u64,
    /// Directory versions recorded in the history (or that cannot be):
    /// name → digest.
    recorded: HashMap<PluginName, Version>,
    /// What the last report said was served: name → version.
    reported: std::sync::Mutex<HashMap<String, Version>>,
}

impl Fleet {
    /// Make the pinned versions this worker serves match the store's pins:
    /// load new ones (off the async threads), drop removed ones.
    async fn sync(&self) -> Result<(), DeployError> {
        let pins = self.store.pinned().await?;
        for name in self.registry.pinned_names() {
            if !pins.contains_key(&name) {
                self.registry.drop_pin(&name);
            }
        }
        for (name, entry) in pins {
            let manifest = entry.manifest.as_deref();
            if self.registry.pin_is_settled(&name, &entry.digest, manifest) {
                continue;
            }
            let bytes = match self.store.blob(&name, &entry.digest).await {
                Ok(bytes) => bytes,
                Err(e @ (DeployError::BlobMissing { .. } | DeployError::Corrupt { .. })) => {
                    self.registry
                        .refuse_pin(&name, &entry.digest, manifest, e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            let registry = Arc::clone(&self.registry);
            let (n, e) = (name.clone(), entry.clone());
            // A refusal is kept by the registry for the report.
            let loaded = tokio::task::spawn_blocking(move || {
                registry.pin(&n, &e.digest, e.manifest.as_deref(), &bytes)
            })
            .await;
            if loaded.is_err() {
                let why = "loading it panicked in the host (a bug: please report it)".to_string();
                self.registry
                    .refuse_pin(&name, &entry.digest, manifest, why);
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
            let root = self.registry.dir().to_path_buf();
            let read = tokio::task::spawn_blocking(move || {
                safe_read::read_beneath(&root, &path, MAX_DEPLOY_BYTES, false)
            })
            .await;
            let Ok(Ok((bytes, _))) = read else {
                // Gone or too big to record; the rescan deals with the file.
                self.recorded.insert(version.name, version.version);
                continue;
            };
            if !version.version.matches(&bytes) {
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
                        tracing::info!(plugin = %version.name, version = %version.version.short(), "version recorded in the plugin's history");
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
        let (plugins, rejected) = (self.registry.serving(), self.registry.refusals());
        self.metrics.set_plugins(plugins.len(), rejected.len());
        let (loads, swaps) = changes(&mut crate::locks::lock(&self.reported), &plugins);
        self.metrics.plugins_changed(loads, swaps);
        self.store
            .report(&WorkerStatus {
                worker: self.worker.clone(),
                dir: self.registry.dir().display().to_string(),
                reported_us: now_us(),
                plugins,
                rejected,
                events_seen: events_seen.to_string(),
                wedged: self.watch.wedged(),
                started_us: self.started_us,
                in_flight: self.metrics.in_flight(),
            })
            .await
    }
}

/// Versions in `now` that `before` did not serve: (all such, those that
/// replaced another version of their name); `before` becomes `now`.
fn changes(
    before: &mut HashMap<String, Version>,
    now: &[crate::plugins::Serving],
) -> (usize, usize) {
    let (mut loads, mut swaps) = (0, 0);
    for p in now {
        match before.get(&p.name) {
            Some(v) if *v == p.version => {}
            Some(_) => {
                loads += 1;
                swaps += 1;
            }
            None => loads += 1,
        }
    }
    *before = now
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    (loads, swaps)
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
/// `synced` turns true after the first full sync of the pins.
pub(crate) async fn fleet_loop(
    config: FleetConfig,
    registry: Arc<Registry>,
    synced: Arc<watch::Sender<bool>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut follower = Follower {
        config,
        registry,
        synced,
        fleet: None,
        conn: None,
        after: String::new(),
        reported: None,
        last_sync: Instant::now(),
    };
    let mut backoff = Duration::from_millis(100);
    while !*stop.borrow() {
        if follower.conn.is_none() {
            match follower.connect().await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!("fleet store: {e}; retrying in {}ms", backoff.as_millis());
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            continue;
        }
        match follower.turn(&mut stop).await {
            Ok(Turn::Done) => {}
            Ok(Turn::Stopped) => break,
            Err(e) => {
                tracing::warn!("fleet store: {e}");
                // Reconnect (and read the pins whole) on the next turn.
                follower.conn = None;
            }
        }
    }
    if let Some(f) = &follower.fleet {
        let _ = f.store.withdraw(&f.worker).await;
    }
}

/// The loop's state between turns.
struct Follower {
    config: FleetConfig,
    registry: Arc<Registry>,
    synced: Arc<watch::Sender<bool>>,
    /// The store, once it answered; kept across reconnects.
    fleet: Option<Fleet>,
    /// The connection blocked on events; none after any Redis trouble.
    conn: Option<Conn>,
    /// The last event acted on.
    after: String,
    /// The registry generation last reported.
    reported: Option<u64>,
    last_sync: Instant,
}

/// How a turn ended.
enum Turn {
    Done,
    /// The stop signal came during the wait for events.
    Stopped,
}

/// Why a turn ended the connection.
#[derive(Debug, thiserror::Error)]
enum TurnError {
    #[error(transparent)]
    Store(#[from] DeployError),
    #[error("no answer to a wait for events; reconnecting")]
    NoAnswer,
}

impl Follower {
    /// (Re)connect: events may have been missed, so read the pins whole,
    /// forget what the memory tier holds (a purge may have passed), and
    /// say at once what this worker serves.
    async fn connect(&mut self) -> Result<(), DeployError> {
        let fleet = match self.fleet.take() {
            Some(fleet) => fleet,
            None => Fleet {
                store: FleetStore::connect(&self.config.url, &self.config.prefix).await?,
                registry: Arc::clone(&self.registry),
                worker: self.config.worker.clone(),
                watch: Arc::clone(&self.config.watch),
                metrics: Arc::clone(&self.config.metrics),
                started_us: self.config.started_us,
                recorded: HashMap::new(),
                reported: std::sync::Mutex::default(),
            },
        };
        let fleet = self.fleet.insert(fleet);
        let conn = fleet.store.blocking_connection().await?;
        let after = fleet.store.last_event().await?;
        fleet.sync().await?;
        self.conn = Some(conn);
        self.after = after;
        self.last_sync = Instant::now();
        self.synced.send_replace(true);
        if let Some(cache) = &self.config.cache {
            cache.invalidate(&Scope::default());
        }
        fleet.record_directory().await;
        let generation = self.registry.generation();
        if fleet.report(&self.after).await.is_ok() {
            self.reported = Some(generation);
        }
        Ok(())
    }

    /// One turn: wait for events (at most [`WAIT`], or until `stop`), act
    /// on them, resync the pins when one changed or the resync period passed,
    /// record directory versions, and report when anything changed. Only
    /// the wait is cut short by `stop`: a sync or a report under way ends.
    async fn turn(&mut self, stop: &mut watch::Receiver<bool>) -> Result<Turn, TurnError> {
        let (Some(fleet), Some(conn)) = (self.fleet.as_mut(), self.conn.as_mut()) else {
            return Ok(Turn::Done);
        };
        let wait = tokio::time::timeout(
            WAIT + WAIT_SLACK,
            fleet.store.wait_event(conn, &self.after, WAIT),
        );
        let events = tokio::select! {
            r = wait => r.map_err(|_| TurnError::NoAnswer)??,
            _ = stop.changed() => return Ok(Turn::Stopped),
        };
        let (pins, purged) = act_on(events, &mut self.after, self.config.cache.as_deref());
        let resync = pins || self.last_sync.elapsed() >= self.config.resync;
        if resync {
            self.last_sync = Instant::now();
            fleet.sync().await?;
        }
        fleet.record_directory().await;
        let generation = self.registry.generation();
        if self.reported != Some(generation) || resync || purged {
            match fleet.report(&self.after).await {
                Ok(()) => self.reported = Some(generation),
                Err(e) => tracing::warn!("fleet store: {e}"),
            }
        }
        Ok(Turn::Done)
    }
}

/// Apply purges and move `after` past `events`; returns (a pin changed, a
/// purge ran).
fn act_on(events: Vec<Event>, after: &mut String, cache: Option<&ResultCache>) -> (bool, bool) {
    let (mut pins, mut purged) = (false, false);
    for event in events {
        *after = event.id;
        match event.purge {
            Some(scope) => {
                purge(cache, &scope);
                purged = true;
            }
            None => pins = true,
        }
    }
    (pins, purged)
}
