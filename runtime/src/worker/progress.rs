//! Live progress: job threads leave each guest's latest report here (a map
//! insert, never a wait on Redis), and a task writes what changed into the
//! jobs' records every [`EVERY`], under the jobs' lease tokens.

use super::InFlight;
use crate::locks::lock;
use crate::queue::{ProgressReport, Queue};
use crate::sandbox::{Progress, ProgressSink};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How often reports reach Redis: often enough for a progress bar, and a
/// guest reporting in a tight loop costs one write per job per period.
pub(crate) const EVERY: Duration = Duration::from_millis(250);

/// Reports not yet written, by (tenant, job id); only the latest is kept.
#[derive(Debug, Default)]
pub(crate) struct LiveProgress {
    pending: Mutex<HashMap<(String, String), (u32, Progress)>>,
}

impl ProgressSink for LiveProgress {
    fn report(&self, tenant: &str, job: &str, attempt: u32, progress: Progress) {
        lock(&self.pending).insert((tenant.to_string(), job.to_string()), (attempt, progress));
    }
}

impl LiveProgress {
    /// The reports to write: those of jobs still in flight, with their
    /// tokens (a job acked since its report needs none: the ack wrote it).
    fn take(&self, in_flight: &InFlight) -> Vec<ProgressReport> {
        let pending = std::mem::take(&mut *lock(&self.pending));
        if pending.is_empty() {
            return Vec::new();
        }
        let flying = lock(in_flight);
        pending
            .into_iter()
            .filter_map(|(key, (attempt, p))| {
                let token = flying.get(&key)?.clone();
                let json = progress_json(attempt, p).to_string();
                Some((key.0, key.1, token, json))
            })
            .collect()
    }
}

/// A progress report as records keep it: `{"done", "total", "attempt"}`
/// (the attempt, so that a reader can tell an earlier attempt's report from
/// the current one's).
pub(crate) fn progress_json(attempt: u32, p: Progress) -> serde_json::Value {
    serde_json::json!({"done": p.done, "total": p.total, "attempt": attempt})
}

/// Write the reports every [`EVERY`] until the worker aborts the task.
pub(super) async fn progress_loop(
    queue: Queue,
    live: std::sync::Arc<LiveProgress>,
    in_flight: InFlight,
) {
    loop {
        tokio::time::sleep(EVERY).await;
        let reports = live.take(&in_flight);
        for chunk in reports.chunks(1000) {
            // Informational: a report lost to an outage is replaced by the
            // next one, and the ack writes the last.
            if let Err(e) = queue.report_progress(chunk).await {
                tracing::debug!("progress not written: {e}");
            }
        }
    }
}
