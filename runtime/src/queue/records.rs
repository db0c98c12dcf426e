//! Reading and tending what jobs leave behind: records, `--wait`, dead
//! letters and counters. One round trip each, counted like the operations.

use super::record::{JobRecord, Status};
use super::{Queue, QueueError};
use crate::redis::RedisError;
use redis::AsyncCommands;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One dead letter, as `spool dead list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadEntry {
    /// Job id.
    pub id: String,
    /// When it died (µs since the epoch).
    pub died_us: u64,
    /// Its record, if it has not expired.
    pub record: Option<JobRecord>,
}

impl Queue {
    /// The record of job `id`.
    pub async fn record(&self, id: &str) -> Result<JobRecord, QueueError> {
        let key = self.key(&format!("job:{id}"));
        let mut conn = self.redis.conn();
        self.count_round_trip();
        let (hash, ttl): (HashMap<String, Vec<u8>>, i64) = redis::pipe()
            .hgetall(&key)
            .ttl(&key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("read job record", e))?;
        if hash.is_empty() {
            return Err(QueueError::NotFound { id: id.to_string() });
        }
        Ok(JobRecord::from_hash(id, hash, ttl))
    }

    /// Wait until job `id` succeeds or dies (it must have been enqueued with
    /// `wait`), then return its record.
    pub async fn wait_for(&self, id: &str, timeout: Duration) -> Result<JobRecord, QueueError> {
        let started = Instant::now();
        let mut conn = self.blocking_connection().await?;
        let done = self.key(&format!("done:{id}"));
        loop {
            // The record may already be terminal (a fast job, or a retry
            // of `--wait`): check before blocking.
            let record = self.record(id).await?;
            if record.status.is_some_and(Status::is_terminal) {
                return Ok(record);
            }
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(QueueError::WaitTimeout {
                    id: id.to_string(),
                    waited: timeout,
                    status: record.status.map_or("unknown".into(), |s| s.to_string()),
                    last_error: record
                        .error
                        .as_ref()
                        .and_then(|e| e.get("message"))
                        .and_then(|m| m.as_str())
                        .map(str::to_string),
                });
            }
            self.count_round_trip();
            let block = left.min(Duration::from_secs(1));
            let popped = tokio::time::timeout(
                block + Duration::from_secs(2),
                conn.blpop::<_, Option<(String, String)>>(&done, block.as_secs_f64()),
            )
            .await;
            match popped {
                Ok(reply) => {
                    reply.map_err(|e| self.error("wait for job", e))?;
                }
                // No reply at all: the connection is half-open; start over.
                Err(_) => conn = self.blocking_connection().await?,
            }
        }
    }

    /// Dead letters, newest first, at most `limit`.
    pub async fn dead_list(&self, limit: usize) -> Result<(u64, Vec<DeadEntry>), QueueError> {
        let mut conn = self.redis.conn();
        let dead = self.key("dead");
        self.count_round_trip();
        // Ids are bytes: a client may have pushed one that is not UTF-8
        // (dead-lettered at claim); it is listed, shown lossily.
        let (total, ids): (u64, Vec<(Vec<u8>, f64)>) = redis::pipe()
            .zcard(&dead)
            .zrevrange_withscores(&dead, 0, isize::try_from(limit).unwrap_or(isize::MAX) - 1)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("list dead letters", e))?;
        let mut entries = Vec::with_capacity(ids.len());
        for (id, score) in ids {
            let id = match String::from_utf8(id) {
                Ok(id) => id,
                Err(e) => {
                    entries.push(DeadEntry {
                        id: String::from_utf8_lossy(e.as_bytes()).into_owned(),
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        died_us: score as u64,
                        record: None,
                    });
                    continue;
                }
            };
            let record = match self.record(&id).await {
                Ok(record) => Some(record),
                // Expired, or not a job hash at all (set aside by a claim).
                Err(
                    QueueError::NotFound { .. } | QueueError::Redis(RedisError::Refused { .. }),
                ) => None,
                Err(e) => return Err(e),
            };
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            entries.push(DeadEntry {
                id,
                died_us: score as u64,
                record,
            });
        }
        Ok((total, entries))
    }

    /// Move dead letters back to their ready lists with fresh attempts; no
    /// ids means all. Returns the ids moved.
    pub async fn dead_retry(&self, ids: &[String]) -> Result<Vec<String>, QueueError> {
        let mut conn = self.redis.conn();
        self.count_round_trip();
        self.inner
            .scripts
            .dead_retry
            .key(&self.inner.keys)
            .arg(ids)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error("retry dead letters", e))
    }

    /// Delete dead letters and their records; no ids means all.
    pub async fn dead_purge(&self, ids: &[String]) -> Result<u64, QueueError> {
        let mut conn = self.redis.conn();
        self.count_round_trip();
        self.inner
            .scripts
            .dead_purge
            .key(&self.inner.keys)
            .arg(ids)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error("purge dead letters", e))
    }

    /// The queue's counters and list lengths.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut conn = self.redis.conn();
        self.count_round_trip();
        let (counters, high, normal, low, delayed, running, dead): (
            HashMap<String, u64>,
            u64,
            u64,
            u64,
            u64,
            u64,
            u64,
        ) = redis::pipe()
            .hgetall(self.key("stats"))
            .llen(self.key("ready:high"))
            .llen(self.key("ready:normal"))
            .llen(self.key("ready:low"))
            .zcard(self.key("delayed"))
            .zcard(self.key("leases"))
            .zcard(self.key("dead"))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("read stats", e))?;
        let get = |k: &str| counters.get(k).copied().unwrap_or(0);
        Ok(QueueStats {
            queued: high + normal + low,
            delayed,
            running,
            dead_letters: dead,
            succeeded_total: get("succeeded"),
            dead_total: get("dead"),
            retried_total: get("retried"),
        })
    }
}

/// Counters and lengths of one queue.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct QueueStats {
    /// Jobs in the ready lists.
    pub queued: u64,
    /// Jobs waiting for their time (delays and backoffs).
    pub delayed: u64,
    /// Jobs under a lease.
    pub running: u64,
    /// Jobs in the dead letters now.
    pub dead_letters: u64,
    /// Jobs that ever succeeded.
    pub succeeded_total: u64,
    /// Jobs that ever died.
    pub dead_total: u64,
    /// Retries scheduled, ever.
    pub retried_total: u64,
}
