//! The queue's operations, one Redis round trip each (a script call or a
//! pipeline), counted in [`Queue::round_trips`].

use super::model::{ClaimedJob, JobRecord, NewJob, Next, Outcome, Status};
use super::{Queue, QueueError};
use redis::{AsyncCommands, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The result of an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The job's id.
    pub id: String,
    /// False when an idempotency key named an existing job (whose id this is).
    pub created: bool,
}

/// The result of a claim.
#[derive(Debug)]
pub struct Claim {
    /// Jobs now leased to the caller.
    pub jobs: Vec<ClaimedJob>,
    /// Time until the next delayed job is due, if any.
    pub next_due: Option<Duration>,
}

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
    fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.inner.keys)
    }

    fn ttl_args(&self) -> [u64; 3] {
        let c = &self.inner.config;
        [
            c.record_ttl.as_secs().max(1),
            c.dead_ttl.as_secs().max(1),
            c.dead_cap.max(1),
        ]
    }

    /// Enqueue one job; one round trip.
    pub async fn enqueue(&self, job: &NewJob) -> Result<Enqueued, QueueError> {
        let mut done = self.enqueue_many(std::slice::from_ref(job)).await?;
        done.pop().ok_or(QueueError::Protocol {
            op: "enqueue",
            reply: "no id".into(),
        })
    }

    /// Enqueue many jobs: one script call (one round trip) per 200 jobs or
    /// 4 MiB of payload.
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, QueueError> {
        let mut done = Vec::with_capacity(jobs.len());
        let mut rest = jobs;
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 0;
            while n < rest.len() && n < 200 && (n == 0 || bytes < 4 << 20) {
                bytes += rest[n].payload.len();
                n += 1;
            }
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut inv = self.inner.scripts.enqueue.key(&self.inner.keys);
            inv.arg(self.inner.config.record_ttl.as_secs().max(1));
            for job in chunk {
                inv.arg(ulid::Ulid::new().to_string())
                    .arg(job.idempotency_key.as_deref().unwrap_or(""))
                    .arg(u64::try_from(job.delay.as_micros()).unwrap_or(u64::MAX))
                    .arg(job.priority.as_str())
                    .arg(4 + usize::from(job.wait) + usize::from(job.no_cache))
                    .arg("plugin")
                    .arg(job.plugin.to_string())
                    .arg("payload")
                    .arg(job.payload.as_slice())
                    .arg("content_type")
                    .arg(&job.content_type)
                    .arg("max_attempts")
                    .arg(job.max_attempts);
                if job.wait {
                    inv.arg("wait").arg(1);
                }
                if job.no_cache {
                    inv.arg("no_cache").arg(1);
                }
            }
            let mut conn = self.conn.clone();
            self.count_round_trip();
            let reply: Vec<(String, i64)> = inv
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.error("enqueue", e))?;
            done.extend(reply.into_iter().map(|(id, created)| Enqueued {
                id,
                created: created == 1,
            }));
        }
        Ok(done)
    }

    /// Claim up to `max` jobs for `worker` under a lease of `lease`. Also
    /// promotes due delayed jobs and requeues expired leases.
    pub async fn claim(
        &self,
        worker: &str,
        max: usize,
        lease: Duration,
    ) -> Result<Claim, QueueError> {
        let [ttl, dead_ttl, cap] = self.ttl_args();
        let mut conn = self.conn.clone();
        self.count_round_trip();
        let reply: Value = self
            .inner
            .scripts
            .claim
            .key(&self.inner.keys)
            .arg(ttl)
            .arg(dead_ttl)
            .arg(cap)
            .arg(worker)
            .arg(max)
            .arg(u64::try_from(lease.as_micros()).unwrap_or(u64::MAX))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error("claim", e))?;
        // Redis read its clock before its reply arrived, so `received` is
        // no earlier than `claimed_us`: times derived from it never run
        // ahead of Redis' (a start can never come after its finish).
        let received = Instant::now();
        parse_claim(reply, received)
    }

    /// Record outcomes; returns, per outcome, whether it was applied (false:
    /// the lease was lost and a newer attempt owns the job).
    ///
    /// One script call per 500 outcomes or 4 MiB of fields, so that a batch
    /// of large outputs never outgrows the response timeout.
    pub async fn ack(&self, outcomes: &[Outcome]) -> Result<Vec<bool>, QueueError> {
        let mut applied = Vec::with_capacity(outcomes.len());
        let mut rest = outcomes;
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 0;
            while n < rest.len() && n < 500 && (n == 0 || bytes < 4 << 20) {
                bytes += rest[n].fields.iter().map(|(_, v)| v.len()).sum::<usize>();
                n += 1;
            }
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            applied.extend(self.ack_chunk(chunk).await?);
        }
        Ok(applied)
    }

    async fn ack_chunk(&self, outcomes: &[Outcome]) -> Result<Vec<bool>, QueueError> {
        let [ttl, dead_ttl, cap] = self.ttl_args();
        let mut inv = self.inner.scripts.ack.key(&self.inner.keys);
        inv.arg(ttl).arg(dead_ttl).arg(cap);
        for o in outcomes {
            let (name, delay) = match o.next {
                Next::Succeeded => ("succeeded", Duration::ZERO),
                Next::Retry { delay } => ("retrying", delay),
                Next::Dead => ("dead", Duration::ZERO),
                Next::Requeue { delay } => ("requeue", delay),
            };
            let at = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
            inv.arg(&o.id)
                .arg(&o.token)
                .arg(name)
                .arg(at)
                .arg(u8::from(o.wait))
                .arg(o.fields.len());
            for (field, value) in &o.fields {
                inv.arg(*field).arg(value.as_slice());
            }
        }
        let mut conn = self.conn.clone();
        self.count_round_trip();
        let applied: Vec<i64> = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error("ack", e))?;
        Ok(applied.into_iter().map(|a| a == 1).collect())
    }

    /// Hand back jobs leased to `worker` that it does not know it holds
    /// (`known`): a claim whose reply was lost. Returns their ids.
    pub async fn recover(&self, worker: &str, known: &[String]) -> Result<Vec<String>, QueueError> {
        let mut conn = self.conn.clone();
        self.count_round_trip();
        self.inner
            .scripts
            .recover
            .key(&self.inner.keys)
            .arg(worker)
            .arg(known)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error("recover lost claims", e))
    }

    /// Renew the leases of running jobs (`(id, token)` pairs); returns, per
    /// job, whether the lease is still ours.
    pub async fn heartbeat(
        &self,
        running: &[(String, String)],
        lease: Duration,
    ) -> Result<Vec<bool>, QueueError> {
        if running.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.inner.scripts.heartbeat.key(&self.inner.keys);
        inv.arg(u64::try_from(lease.as_micros()).unwrap_or(u64::MAX));
        for (id, token) in running {
            inv.arg(id).arg(token);
        }
        let mut conn = self.conn.clone();
        self.count_round_trip();
        let renewed: Vec<i64> = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.error("heartbeat", e))?;
        Ok(renewed.into_iter().map(|r| r == 1).collect())
    }

    /// Block on `conn` until an enqueue wakes us or `timeout` passes.
    pub async fn wait_for_work(
        &self,
        conn: &mut redis::aio::ConnectionManager,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        self.count_round_trip();
        let _: Option<(String, String)> = conn
            .blpop(self.key("wake"), timeout.as_secs_f64().max(0.01))
            .await
            .map_err(|e| self.error("wait for work", e))?;
        Ok(())
    }

    /// The record of job `id`.
    pub async fn record(&self, id: &str) -> Result<JobRecord, QueueError> {
        let key = self.key(&format!("job:{id}"));
        let mut conn = self.conn.clone();
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
        let mut conn = self.conn.clone();
        let dead = self.key("dead");
        self.count_round_trip();
        let (total, ids): (u64, Vec<(String, f64)>) = redis::pipe()
            .zcard(&dead)
            .zrevrange_withscores(&dead, 0, isize::try_from(limit).unwrap_or(isize::MAX) - 1)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("list dead letters", e))?;
        let mut entries = Vec::with_capacity(ids.len());
        for (id, score) in ids {
            let record = match self.record(&id).await {
                Ok(record) => Some(record),
                // Expired, or not a job hash at all (set aside by a claim).
                Err(QueueError::NotFound { .. } | QueueError::Redis { .. }) => None,
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
        let mut conn = self.conn.clone();
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
        let mut conn = self.conn.clone();
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
        let mut conn = self.conn.clone();
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

    /// `(status, enqueued_us, started_us, finished_us, cache)` of many jobs, one
    /// pipelined round trip per 1,000 (for `spool bench`).
    pub async fn job_times(&self, ids: &[String]) -> Result<Vec<JobTimes>, QueueError> {
        let mut conn = self.conn.clone();
        let mut all = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(1000) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.cmd("HMGET").arg(self.key(&format!("job:{id}"))).arg(&[
                    "status",
                    "enqueued_us",
                    "started_us",
                    "finished_us",
                    "cache",
                ]);
            }
            self.count_round_trip();
            type Row = (
                Option<String>,
                Option<u64>,
                Option<u64>,
                Option<u64>,
                Option<String>,
            );
            let rows: Vec<Row> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| self.error("read job times", e))?;
            all.extend(
                rows.into_iter()
                    .map(|(status, enqueued, started, finished, cache)| JobTimes {
                        status: status.as_deref().and_then(Status::parse),
                        enqueued_us: enqueued,
                        started_us: started,
                        finished_us: finished,
                        cache,
                    }),
            );
        }
        Ok(all)
    }

    /// Total commands Redis has executed (`INFO commandstats`), to measure
    /// commands per job.
    pub async fn server_command_calls(&self) -> Result<u64, QueueError> {
        let mut conn = self.conn.clone();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("INFO commandstats", e))?;
        Ok(info
            .lines()
            .filter_map(|l| l.split("calls=").nth(1))
            .filter_map(|rest| rest.split(',').next()?.parse::<u64>().ok())
            .sum())
    }
}

/// When one job was enqueued, started and finished (µs since the epoch).
#[derive(Debug, Clone)]
pub struct JobTimes {
    /// Its status.
    pub status: Option<Status>,
    /// Enqueued.
    pub enqueued_us: Option<u64>,
    /// Latest attempt started.
    pub started_us: Option<u64>,
    /// Latest attempt finished.
    pub finished_us: Option<u64>,
    /// What the result cache did for it.
    pub cache: Option<String>,
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

fn parse_claim(reply: Value, received: Instant) -> Result<Claim, QueueError> {
    let bad = |what: &str| QueueError::Protocol {
        op: "claim",
        reply: what.to_string(),
    };
    let Value::Array(items) = reply else {
        return Err(bad("not an array"));
    };
    let mut items = items.into_iter();
    let next_due = match items.next() {
        Some(Value::Int(us)) if us >= 0 => Some(Duration::from_micros(us.unsigned_abs())),
        Some(Value::Int(_)) => None,
        _ => return Err(bad("no next-due time")),
    };
    let claimed_us = match items.next() {
        Some(Value::Int(us)) => us.unsigned_abs(),
        _ => return Err(bad("no time")),
    };
    let mut jobs = Vec::new();
    for item in items {
        let Value::Array(f) = item else {
            return Err(bad("job is not an array"));
        };
        if f.len() != 12 {
            return Err(bad("job has the wrong number of fields"));
        }
        let mut f = f.into_iter();
        let mut next = || f.next().unwrap_or(Value::Nil);
        let id = bytes(next()).ok_or_else(|| bad("job without id"))?;
        let token = int_or_text(next()).ok_or_else(|| bad("job without token"))?;
        let attempt = int_or_text(next())
            .and_then(|a| a.parse().ok())
            .unwrap_or(1);
        jobs.push(ClaimedJob {
            id: String::from_utf8_lossy(&id).into_owned(),
            token,
            attempt,
            plugin: text(next()),
            content_type: text(next()),
            payload: bytes(next()).unwrap_or_default(),
            max_attempts: text(next()),
            enqueued_us: text(next()).and_then(|s| s.parse().ok()),
            wait: text(next()).is_some_and(|w| w == "1"),
            priority: text(next()),
            waiting_since_us: text(next()).and_then(|s| s.parse().ok()),
            no_cache: text(next()).is_some_and(|v| v == "1"),
            claimed_us,
            received,
        });
    }
    Ok(Claim { jobs, next_due })
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

fn text(v: Value) -> Option<String> {
    bytes(v).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn int_or_text(v: Value) -> Option<String> {
    match v {
        Value::Int(i) => Some(i.to_string()),
        other => text(other),
    }
}
