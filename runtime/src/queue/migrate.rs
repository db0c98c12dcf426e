//! Moving jobs from the layout before fair share — every job of a queue
//! under `PREFIX:{QUEUE}` (`…:job:ID`, `…:ready:PRIORITY`, `…:delayed`,
//! `…:leases`, `…:dead`) — into their tenants' slots. Workers do it in
//! their sweep, and `spool migrate` does it at once; it is idempotent, so
//! both at the same time, or a crash half-way, lose and duplicate nothing:
//! each job is written to its tenant first (once), then taken off the old
//! keys.
//!
//! Finished records stay where they are until they expire; `spool job`
//! still finds them there.

use super::announce::Announce;
use super::{Queue, QueueError};
use crate::ids::PluginName;
use redis::Value;
use std::collections::HashMap;

/// The old structures, and how each holds its ids.
const OLD: [(&str, &str); 6] = [
    ("ready:high", "ready"),
    ("ready:normal", "ready"),
    ("ready:low", "ready"),
    ("delayed", "delayed"),
    ("leases", "leases"),
    ("dead", "dead"),
];

/// One job read from the old keys: id, score, TTL (ms), its hash. Ids are
/// bytes: an old claim parked ids that are not UTF-8 in the dead letters.
type OldJob = (Vec<u8>, f64, i64, Vec<(String, Vec<u8>)>);

/// An old id and its score.
type OldId = (Vec<u8>, f64);

/// Jobs read per round trip.
const BATCH: isize = 200;

impl Queue {
    /// How many jobs wait under the old keys.
    pub async fn legacy_jobs(&self) -> Result<u64, QueueError> {
        let mut pipe = redis::pipe();
        for (suffix, kind) in OLD {
            let key = self.key(suffix);
            if kind == "ready" {
                pipe.llen(key);
            } else {
                pipe.zcard(key);
            }
        }
        let mut conn = self.redis.conn();
        self.count_round_trip();
        let counts: Vec<u64> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("count jobs under the old keys", e))?;
        Ok(counts.iter().sum())
    }

    /// Move every job under the old keys into its tenant's slot; `progress`
    /// hears the running total. Returns how many were moved.
    pub async fn migrate_legacy(&self, mut progress: impl FnMut(u64)) -> Result<u64, QueueError> {
        let mut moved = 0;
        for (suffix, kind) in OLD {
            loop {
                let n = self.migrate_batch(suffix, kind).await?;
                if n == 0 {
                    break;
                }
                moved += n;
                progress(moved);
            }
        }
        Ok(moved)
    }

    /// One batch of `suffix`: read ids and hashes, adopt them per tenant,
    /// then take them off the old keys. Returns how many ids it handled.
    async fn migrate_batch(&self, suffix: &str, kind: &str) -> Result<u64, QueueError> {
        let old = self.key(suffix);
        let ids = self.old_ids(&old, kind).await?;
        if ids.is_empty() {
            return Ok(0);
        }
        let by_tenant = self.old_jobs(&ids).await?;
        // Named in the queue's slot first: the announcement below is a
        // call of its own, and a crash before it must not hide the jobs
        // adopted here from the sweep.
        let tenants: Vec<&str> = by_tenant.keys().map(String::as_str).collect();
        self.register(&tenants).await?;
        let mut heard = Vec::new();
        for (tenant, jobs) in &by_tenant {
            heard.push(self.adopt(tenant, kind, jobs).await?);
        }
        self.announce(&heard).await?;
        // Only now off the old keys: a crash before this adopts them again,
        // which changes nothing.
        let mut pipe = redis::pipe();
        for (id, _) in &ids {
            if kind == "ready" {
                pipe.lrem(&old, 1, id);
            } else {
                pipe.zrem(&old, id);
            }
            pipe.del(self.old_job_key(id));
        }
        let mut conn = self.redis.conn();
        self.count_round_trip();
        let _: () = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("remove moved jobs from the old keys", e))?;
        Ok(ids.len() as u64)
    }

    /// `PREFIX:{QUEUE}:job:ID`, the old key of a job.
    fn old_job_key(&self, id: &[u8]) -> Vec<u8> {
        [self.key("job:").as_bytes(), id].concat()
    }

    /// Up to [`BATCH`] ids of an old list or set, with their scores. A list
    /// is read from its newest end: adopted in that order to the consuming
    /// end of the new lists, batch after batch, the oldest job ends up
    /// first in line.
    async fn old_ids(&self, old: &str, kind: &str) -> Result<Vec<OldId>, QueueError> {
        let mut conn = self.redis.conn();
        self.count_round_trip();
        if kind == "ready" {
            let ids: Vec<Vec<u8>> = redis::cmd("LRANGE")
                .arg(old)
                .arg(0)
                .arg(BATCH - 1)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.error("read old ready list", e))?;
            return Ok(ids.into_iter().map(|id| (id, 0.0)).collect());
        }
        redis::cmd("ZRANGE")
            .arg(old)
            .arg(0)
            .arg(BATCH - 1)
            .arg("WITHSCORES")
            .query_async::<Vec<OldId>>(&mut conn)
            .await
            .map_err(|e| self.error("read old set", e))
    }

    /// The old hashes of `ids` with their TTLs, by the tenant of their
    /// plugin (`default` when it names none).
    async fn old_jobs(&self, ids: &[OldId]) -> Result<HashMap<String, Vec<OldJob>>, QueueError> {
        let mut pipe = redis::pipe();
        // A key that is not a hash answers an error in its place: it is
        // adopted as an id without a record (a claim dead-letters it).
        pipe.ignore_errors();
        for (id, _) in ids {
            let key = self.old_job_key(id);
            pipe.hgetall(&key).pttl(&key);
        }
        let mut conn = self.redis.conn();
        self.count_round_trip();
        let read: Vec<redis::RedisResult<Value>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("read old job records", e))?;
        let mut by_tenant: HashMap<String, Vec<OldJob>> = HashMap::new();
        for ((id, score), pair) in ids.iter().zip(read.chunks(2)) {
            let fields: Vec<(String, Vec<u8>)> = match &pair[0] {
                Ok(v) => redis::from_redis_value::<HashMap<String, Vec<u8>>>(v.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                Err(_) => Vec::new(),
            };
            let ttl = match pair[1] {
                Ok(Value::Int(ms)) if ms > 0 => ms,
                _ => 0,
            };
            let tenant = fields
                .iter()
                .find(|(f, _)| f == "plugin")
                .and_then(|(_, v)| PluginName::parse(&String::from_utf8_lossy(v)).ok())
                .map_or_else(|| "default".to_string(), |p| p.tenant);
            by_tenant
                .entry(tenant)
                .or_default()
                .push((id.clone(), *score, ttl, fields));
        }
        Ok(by_tenant)
    }

    /// `adopt.lua` for one tenant's jobs; what to announce for it.
    async fn adopt(
        &self,
        tenant: &str,
        kind: &str,
        jobs: &[OldJob],
    ) -> Result<Announce, QueueError> {
        let keys = self.tenant_keys(tenant);
        let mut inv = self.inner.scripts.adopt.key(&keys);
        for (id, score, ttl, fields) in jobs {
            inv.arg(id)
                .arg(kind)
                .arg(*score as u64)
                .arg(*ttl)
                .arg(fields.len());
            for (f, v) in fields {
                inv.arg(f).arg(v.as_slice());
            }
        }
        let reply = self.run_all("adopt old jobs", &[inv]).await?;
        let reply = reply.into_iter().next().unwrap_or(Value::Nil);
        let (announce, _) = Announce::split(tenant, reply, "adopt old jobs")?;
        // Announced even with nothing to say: it registers the tenant.
        Ok(announce.unwrap_or(Announce {
            tenant: tenant.to_string(),
            seq: 0,
            timer: 0,
            ready: false,
        }))
    }
}
