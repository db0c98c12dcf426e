//! Quiet tenants' lists of succeeded ids folded into their counters.
//!
//! With a count cap on succeeded records, an ack lists each success in
//! `T:recent` and does not add it to `succeeded` in `T:stats`: the list
//! counts it, and a tenant's total is the field plus the list's length
//! (ack.lua, `keep_newest`; stats.lua). That saves a command per idle job.
//! The list expires thirty days past the last records it names (a
//! tenant no worker serves any more does not keep its ids for good), and
//! would take its counts with it: so once an hour one worker of the fleet
//! (whichever of this version takes the lock) folds every list set to
//! expire within [`WINDOW`] into its counter: from a day after its
//! records expired, so none leaves the count cap early. Counts are lost
//! only if no worker of this version runs for those 29 days.

use super::{Queue, QueueError};
use std::time::Duration;

/// How often some worker of the fleet folds (a lock in the queue's slot).
/// A fold looks at every tenant, a call each: an hour keeps that a
/// fraction of what the sweep's visits cost.
const FOLD_EVERY: Duration = Duration::from_secs(3600);

/// A list set to expire within this is folded. ack.lua's `KEPT_MARGIN_S`
/// (thirty days) is how long a list outlives its records: this is shorter
/// by a day, more than a worker's refresh period of the list's expiry and
/// a fold's period, so the records are gone by then (see the test); and
/// longer than a fold's period by far, so a list is folded while any
/// worker runs.
const WINDOW: Duration = Duration::from_secs(29 * 86_400);

/// Tenants folded per round trip.
const CHUNK: usize = 200;

impl Queue {
    /// Fold the lists of succeeded ids set to expire soon, if no other
    /// worker did within [`FOLD_EVERY`]; how many successes moved into
    /// counters. (Each worker asks at each of its sweeps' ticks, outside
    /// the sweep's lock: workers of an older version, which never fold,
    /// may hold that one for long.)
    pub async fn fold_counts(&self, worker: &str) -> Result<i64, QueueError> {
        if !self
            .take_turn("fold", worker, FOLD_EVERY, "take the fold's lock")
            .await?
        {
            return Ok(0);
        }
        let tenants = self.tenants().await?;
        let window = u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX);
        let mut folded = 0;
        for chunk in tenants.chunks(CHUNK) {
            let keys: Vec<String> = chunk.iter().map(|t| self.tenant_keys(t)).collect();
            let calls: Vec<_> = keys
                .iter()
                .map(|k| {
                    let mut inv = self.inner.scripts.fold.key(k);
                    inv.arg(window);
                    inv
                })
                .collect();
            for (tenant, reply) in chunk
                .iter()
                .zip(self.run_calls("fold counts", &calls).await?)
            {
                match reply {
                    Ok(redis::Value::Int(n)) => folded += n,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(tenant = %tenant, "folding the succeeded count: {e}"),
                }
            }
        }
        Ok(folded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_folds_after_its_records_expire_and_well_before_it_does() {
        let margin = crate::queue::ops::kept_margin_s();
        // The records: listed up to a worker's refresh period (a minute,
        // queue/ops.rs) after the list's expiry was last raised, and an
        // ack's call on top: all expired before the window opens.
        assert!(Duration::from_secs(margin) >= WINDOW + Duration::from_secs(120));
        // The list: folded within the window by a worker that folds once
        // an hour, even with a few folds missed.
        assert!(WINDOW >= FOLD_EVERY * 24, "{WINDOW:?}");
    }
}
