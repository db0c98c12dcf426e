//! A tenant's jobs by status, newest (or soonest) first, for the
//! dashboard's job lists: read from the structures the queue keeps anyway
//! (ready lists, the delayed and lease sets, the succeeded and dead
//! sets), then a few fields of each record. Two round trips.

use super::record::Status;
use super::{Queue, QueueError};
use std::collections::HashMap;

/// A job in a list: enough to show a row and link to its record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobSummary {
    /// Job id.
    pub id: String,
    /// `TENANT/NAME` or `NAME` as enqueued.
    pub plugin: Option<String>,
    /// Its status now (it may have moved on since it was listed).
    pub status: Option<Status>,
    /// Its latest attempt.
    pub attempts: u32,
    /// When it was enqueued, started and finished (µs), as far as known.
    pub enqueued_us: Option<u64>,
    /// See `enqueued_us`.
    pub started_us: Option<u64>,
    /// See `enqueued_us`.
    pub finished_us: Option<u64>,
}

impl Queue {
    /// Up to `limit` of `tenant`'s jobs that are (or were, when listed)
    /// `status`: queued (next to run first), delayed and retrying (soonest
    /// due first), running (soonest lease expiry first), succeeded and dead
    /// (newest first). Other statuses list nothing.
    pub async fn recent(
        &self,
        tenant: &str,
        status: Status,
        limit: usize,
    ) -> Result<Vec<JobSummary>, QueueError> {
        let ids = self.ids_by_status(tenant, status, limit).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.tenant_keys(tenant);
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET").arg(format!("{keys}:job:{id}")).arg(
                &[
                    "plugin",
                    "status",
                    "attempt",
                    "enqueued_us",
                    "started_us",
                    "finished_us",
                    "run",
                ][..],
            );
        }
        let mut conn = self.redis.conn();
        self.count_round_trip();
        let rows: Vec<Vec<Option<String>>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("read job summaries", e))?;
        fn num<T: std::str::FromStr>(v: &Option<String>) -> Option<T> {
            v.as_deref().and_then(|s| s.parse().ok())
        }
        Ok(ids
            .into_iter()
            .zip(rows)
            // A record that expired since it was listed is left out.
            .filter(|(_, f)| f.first().is_some_and(Option::is_some))
            .map(|(id, f)| JobSummary {
                id,
                plugin: f[0].clone(),
                status: f[1].as_deref().and_then(Status::parse),
                attempts: num(&f[2]).unwrap_or(0),
                enqueued_us: num(&f[3]),
                // (`run` since 2026-12-04, `started_us` before.)
                started_us: super::RunField::latest(f[6].as_deref(), num(&f[4]))
                    .map_or_else(|| num(&f[4]), |run| run.started_us),
                finished_us: num(&f[5]),
            })
            .collect())
    }

    async fn ids_by_status(
        &self,
        tenant: &str,
        status: Status,
        limit: usize,
    ) -> Result<Vec<String>, QueueError> {
        let Some(pipe) = ids_pipe(&self.tenant_keys(tenant), status, limit) else {
            return Ok(Vec::new());
        };
        let mut conn = self.redis.conn();
        self.count_round_trip();
        let lists: Vec<Vec<String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("list jobs by status", e))?;
        let mut ids: Vec<String> = Vec::new();
        for (n, mut list) in lists.into_iter().enumerate() {
            if status == Status::Queued {
                // Next to run first: the right end of each list.
                list.reverse();
            }
            if status == Status::Running && n == 0 {
                list = list.iter().filter_map(|e| leased_id(e)).collect();
            }
            ids.extend(list);
        }
        let mut seen = HashMap::new();
        ids.retain(|id| seen.insert(id.clone(), ()).is_none());
        ids.truncate(limit);
        Ok(ids)
    }
}

/// The job id of an entry of `T:leased`, `ID TOKEN` (lua/lib.lua,
/// `lease_entry`); none for one written by hand otherwise.
fn leased_id(entry: &str) -> Option<String> {
    let (id, token) = entry.rsplit_once(' ')?;
    (!token.is_empty() && token.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_owned())
}

/// The reads that list `status`'s ids (in the tenant's `keys`), or none
/// for a status no structure lists.
fn ids_pipe(keys: &str, status: Status, limit: usize) -> Option<redis::Pipeline> {
    let last = isize::try_from(limit.max(1)).unwrap_or(isize::MAX) - 1;
    let mut pipe = redis::pipe();
    match status {
        // Claims take from the right end of each list, high first.
        Status::Queued => {
            for p in ["high", "normal", "low"] {
                pipe.cmd("LRANGE")
                    .arg(format!("{keys}:ready:{p}"))
                    .arg(-(last + 1))
                    .arg(-1);
            }
        }
        Status::Delayed | Status::Retrying => {
            pipe.cmd("ZRANGE")
                .arg(format!("{keys}:delayed"))
                .arg(0)
                .arg(last);
        }
        Status::Running => {
            // `leased` holds `ID TOKEN` (lua/lib.lua, `lease_entry`);
            // `leases`, ids leased by workers of the versions before it.
            for key in ["leased", "leases"] {
                pipe.cmd("ZRANGE")
                    .arg(format!("{keys}:{key}"))
                    .arg(0)
                    .arg(last);
            }
        }
        Status::Succeeded => {
            // Newest first: acks push at the head. (`kept`: the list of
            // workers before 2026-12-05, while any ack.)
            for list in ["recent", "kept"] {
                pipe.cmd("LRANGE")
                    .arg(format!("{keys}:{list}"))
                    .arg(0)
                    .arg(last);
            }
        }
        Status::Dead => {
            pipe.cmd("ZRANGE")
                .arg(format!("{keys}:dead"))
                .arg(0)
                .arg(last)
                .arg("REV");
        }
        Status::Cancelled => return None,
    }
    Some(pipe)
}

#[cfg(test)]
mod tests {
    use super::leased_id;

    #[test]
    fn a_leased_entry_names_its_job_by_all_but_its_last_word() {
        assert_eq!(leased_id("01JB 1733400000000000").as_deref(), Some("01JB"));
        assert_eq!(leased_id("an id 7").as_deref(), Some("an id"));
        assert_eq!(leased_id("01JB"), None);
        assert_eq!(leased_id("01JB 12a"), None);
        assert_eq!(leased_id("01JB "), None);
    }
}
