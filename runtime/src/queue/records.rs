//! Reading and tending what jobs leave behind: records, `--wait`, dead
//! letters and counters, across the tenants of a queue. One pipeline per
//! question where the tenants are known.

use super::announce::Announce;
use super::record::{JobRecord, Status};
use super::{Queue, QueueError};
use crate::redis::RedisError;
use redis::{AsyncCommands, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One dead letter, as `spool dead list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadEntry {
    /// The tenant whose queue holds it.
    pub tenant: String,
    /// Job id.
    pub id: String,
    /// When it died (µs since the epoch).
    pub died_us: u64,
    /// Its record, if it has not expired.
    pub record: Option<JobRecord>,
}

impl Queue {
    /// The record of job `id` and its tenant: looked up in every tenant of
    /// the queue (one pipeline), and under the keys of Spool before fair
    /// share (`PREFIX:{QUEUE}:job:ID`) for records written then.
    pub async fn find(&self, id: &str) -> Result<(String, JobRecord), QueueError> {
        let tenants = self.tenants().await?;
        let mut batch = crate::redis::Batch::new();
        let keys = tenants
            .iter()
            .map(|t| format!("{}:job:{id}", self.tenant_keys(t)))
            .chain([self.key(&format!("job:{id}"))]);
        for key in keys {
            batch.add(&key, redis::cmd("EXISTS").arg(&key).clone());
        }
        self.count_round_trip();
        let found: Vec<bool> = batch
            .run(&self.redis)
            .await
            .and_then(|replies| Ok(redis::from_redis_value(redis::Value::Array(replies))?))
            .map_err(|e| self.error("find job", e))?;
        let at = found.iter().position(|f| *f);
        match at {
            Some(i) if i < tenants.len() => {
                let record = self.record_in(&tenants[i], id).await?;
                Ok((tenants[i].clone(), record))
            }
            Some(_) => Ok((
                String::new(),
                self.read_record(&self.key(&format!("job:{id}")), id)
                    .await?,
            )),
            None => Err(QueueError::NotFound { id: id.to_string() }),
        }
    }

    /// The record of job `id`, whichever tenant's it is ([`Queue::find`]).
    pub async fn record(&self, id: &str) -> Result<JobRecord, QueueError> {
        Ok(self.find(id).await?.1)
    }

    /// The record of `tenant`'s job `id`.
    pub async fn record_in(&self, tenant: &str, id: &str) -> Result<JobRecord, QueueError> {
        let key = format!("{}:job:{id}", self.tenant_keys(tenant));
        self.read_record(&key, id).await
    }

    /// `tenant`'s job `id` at a glance: status, attempt and progress only
    /// (one `HMGET`, never the payload or output), for what polls a job.
    pub async fn glance(&self, tenant: &str, id: &str) -> Result<Glance, QueueError> {
        let key = format!("{}:job:{id}", self.tenant_keys(tenant));
        let mut conn = self.redis.conn();
        self.count_round_trip();
        // `plugin` too: a plain-command enqueue may leave `status` out.
        let (status, attempt, progress, plugin): Fields4 = redis::cmd("HMGET")
            .arg(&key)
            .arg("status")
            .arg("attempt")
            .arg("progress")
            .arg("plugin")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("read job status", e))?;
        if status.is_none() && plugin.is_none() {
            return Err(QueueError::NotFound { id: id.to_string() });
        }
        let attempts = attempt.and_then(|a| a.parse().ok()).unwrap_or(0);
        Ok(Glance {
            status: status.as_deref().and_then(Status::parse),
            attempts,
            progress: super::record::current_progress(
                progress.and_then(|p| serde_json::from_str(&p).ok()),
                attempts,
            ),
        })
    }

    async fn read_record(&self, key: &str, id: &str) -> Result<JobRecord, QueueError> {
        let mut conn = self.redis.conn();
        self.count_round_trip();
        let (hash, ttl): (HashMap<String, Vec<u8>>, i64) = redis::pipe()
            .hgetall(key)
            .ttl(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("read job record", e))?;
        if hash.is_empty() {
            return Err(QueueError::NotFound { id: id.to_string() });
        }
        Ok(JobRecord::from_hash(id, hash, ttl))
    }

    /// Wait until `tenant`'s job `id` succeeds or dies (it must have been
    /// enqueued with `wait`), then return its record.
    pub async fn wait_for(
        &self,
        tenant: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<JobRecord, QueueError> {
        let started = Instant::now();
        let mut conn = self.blocking_connection().await?;
        let done = format!("{}:done:{id}", self.tenant_keys(tenant));
        loop {
            // The record may already be terminal (a fast job, or a retry
            // of `--wait`): check before blocking.
            let record = self.record_in(tenant, id).await?;
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

    /// Dead letters of every tenant, newest first, at most `limit`; and
    /// how many there are in all.
    pub async fn dead_list(&self, limit: usize) -> Result<(u64, Vec<DeadEntry>), QueueError> {
        let tenants = self.tenants().await?;
        self.dead_list_in(&tenants, limit).await
    }

    /// [`Queue::dead_list`] of `tenants` only.
    pub async fn dead_list_in(
        &self,
        tenants: &[String],
        limit: usize,
    ) -> Result<(u64, Vec<DeadEntry>), QueueError> {
        self.dead_page_in(tenants, 0, limit).await
    }

    /// The dead letters of `tenants`, newest first, from the `offset`-th
    /// on, at most `limit`, and how many there are in all. Only the page's
    /// records are read.
    pub async fn dead_page_in(
        &self,
        tenants: &[String],
        offset: usize,
        limit: usize,
    ) -> Result<(u64, Vec<DeadEntry>), QueueError> {
        let upto = offset.saturating_add(limit);
        let mut total = 0;
        let mut all: Vec<(String, Vec<u8>, f64)> = Vec::new();
        for tenant in tenants {
            let dead = format!("{}:dead", self.tenant_keys(tenant));
            let mut conn = self.redis.conn();
            self.count_round_trip();
            // Ids are bytes: a client may have pushed one that is not UTF-8
            // (dead-lettered at claim); it is listed, shown lossily.
            let (count, ids): (u64, Vec<(Vec<u8>, f64)>) = redis::pipe()
                .zcard(&dead)
                .zrevrange_withscores(&dead, 0, isize::try_from(upto).unwrap_or(isize::MAX) - 1)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.error("list dead letters", e))?;
            total += count;
            all.extend(ids.into_iter().map(|(id, at)| (tenant.clone(), id, at)));
        }
        all.sort_by(|a, b| b.2.total_cmp(&a.2));
        all.truncate(upto);
        let page: Vec<_> = all.into_iter().skip(offset).collect();
        Ok((total, self.dead_entries(page).await?))
    }

    /// The entries of `(tenant, id, died)` rows, with their records.
    async fn dead_entries(
        &self,
        rows: Vec<(String, Vec<u8>, f64)>,
    ) -> Result<Vec<DeadEntry>, QueueError> {
        let mut entries = Vec::with_capacity(rows.len());
        for (tenant, id, score) in rows {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let died_us = score as u64;
            let id = match String::from_utf8(id) {
                Ok(id) => id,
                Err(e) => {
                    let id = String::from_utf8_lossy(e.as_bytes()).into_owned();
                    entries.push(DeadEntry {
                        tenant,
                        id,
                        died_us,
                        record: None,
                    });
                    continue;
                }
            };
            let record = match self.record_in(&tenant, &id).await {
                Ok(record) => Some(record),
                // Expired, or not a job hash at all (set aside by a claim).
                Err(
                    QueueError::NotFound { .. } | QueueError::Redis(RedisError::Refused { .. }),
                ) => None,
                Err(e) => return Err(e),
            };
            entries.push(DeadEntry {
                tenant,
                id,
                died_us,
                record,
            });
        }
        Ok(entries)
    }

    /// Move dead letters back to their ready lists (or the head of their
    /// group) with fresh attempts; no ids means all. Returns the ids moved.
    pub async fn dead_retry(&self, ids: &[String]) -> Result<Vec<String>, QueueError> {
        let tenants = self.tenants().await?;
        self.dead_retry_in(&tenants, ids).await
    }

    /// [`Queue::dead_retry`] in `tenants` only.
    pub async fn dead_retry_in(
        &self,
        tenants: &[String],
        ids: &[String],
    ) -> Result<Vec<String>, QueueError> {
        let replies = self.per_tenant(tenants, ids, true).await?;
        let (mut moved, mut heard) = (Vec::new(), Vec::new());
        for (tenant, reply) in tenants.iter().zip(replies) {
            let (announce, rest) = Announce::split(tenant, reply, "retry dead letters")?;
            heard.extend(announce);
            moved.extend(rest.into_iter().filter_map(crate::redis::value::text));
        }
        self.announce_or_warn(&heard, "retry dead letters").await;
        Ok(moved)
    }

    /// Delete dead letters and their records; no ids means all.
    pub async fn dead_purge(&self, ids: &[String]) -> Result<u64, QueueError> {
        let tenants = self.tenants().await?;
        self.dead_purge_in(&tenants, ids).await
    }

    /// [`Queue::dead_purge`] in `tenants` only.
    pub async fn dead_purge_in(
        &self,
        tenants: &[String],
        ids: &[String],
    ) -> Result<u64, QueueError> {
        let replies = self.per_tenant(tenants, ids, false).await?;
        Ok(replies
            .into_iter()
            .map(|r| match r {
                Value::Int(n) => n.unsigned_abs(),
                _ => 0,
            })
            .sum())
    }

    /// `dead_retry.lua` (`retry`) or `dead_purge.lua` in every tenant.
    async fn per_tenant(
        &self,
        tenants: &[String],
        ids: &[String],
        retry: bool,
    ) -> Result<Vec<Value>, QueueError> {
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = tenants.iter().map(|t| self.tenant_keys(t)).collect();
        let script = if retry {
            &self.inner.scripts.dead_retry
        } else {
            &self.inner.scripts.dead_purge
        };
        let calls: Vec<_> = keys
            .iter()
            .map(|k| {
                let mut inv = script.key(k);
                inv.arg(ids);
                inv
            })
            .collect();
        let op = if retry {
            "retry dead letters"
        } else {
            "purge dead letters"
        };
        self.run_all(op, &calls).await
    }

    /// The queue's counters and lengths, summed over its tenants.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut sum = QueueStats::default();
        for s in self.all_tenant_states().await? {
            sum.queued += s.queued + s.grouped;
            sum.delayed += s.delayed;
            sum.running += s.running;
            sum.dead_letters += s.dead_letters;
            sum.succeeded_total += s.succeeded_total;
            sum.dead_total += s.dead_total;
            sum.retried_total += s.retried_total;
        }
        Ok(sum)
    }
}

/// Counters and lengths of one queue.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct QueueStats {
    /// Jobs in the ready lists and groups.
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

type Fields4 = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// What [`Queue::glance`] reads of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Glance {
    /// Its status.
    pub status: Option<Status>,
    /// Its attempt (0 before the first claim).
    pub attempts: u32,
    /// The latest attempt's progress, if it reported any.
    pub progress: Option<serde_json::Value>,
}
