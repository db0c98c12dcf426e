//! Worker reports: what each worker serves and refuses, published every
//! few seconds and on changes, and expiring when a worker stops refreshing.

use super::model::WorkerStatus;
use super::{DeployError, FleetStore, REPORT_TTL};
use redis::AsyncCommands;

impl FleetStore {
    /// Publish what a worker serves (expires after [`REPORT_TTL`]).
    pub async fn report(&self, status: &WorkerStatus) -> Result<(), DeployError> {
        let json = serde_json::to_string(status).expect("a worker status serializes");
        let now_ms = status.reported_us / 1000;
        let stale = now_ms.saturating_sub(u64::try_from(REPORT_TTL.as_millis()).unwrap_or(0) * 4);
        let mut conn = self.redis.conn();
        redis::pipe()
            .set_ex(
                self.key(&format!("worker:{}", status.worker)),
                json,
                REPORT_TTL.as_secs(),
            )
            .ignore()
            .zadd(self.key("workers"), &status.worker, now_ms)
            .ignore()
            .zrembyscore(self.key("workers"), 0, stale)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.error("publish the worker status", e))
    }

    /// Withdraw a worker's report (it is stopping).
    pub async fn withdraw(&self, worker: &str) -> Result<(), DeployError> {
        let mut conn = self.redis.conn();
        redis::pipe()
            .del(self.key(&format!("worker:{worker}")))
            .ignore()
            .zrem(self.key("workers"), worker)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.error("withdraw the worker status", e))
    }

    /// The reports of the workers alive now (reports expire), by worker id.
    pub async fn workers(&self) -> Result<Vec<WorkerStatus>, DeployError> {
        let mut conn = self.redis.conn();
        let ids: Vec<String> = conn
            .zrange(self.key("workers"), 0, -1)
            .await
            .map_err(|e| self.error("list workers", e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids
            .iter()
            .map(|id| self.key(&format!("worker:{id}")))
            .collect();
        let raw: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("read worker reports", e))?;
        let mut all: Vec<WorkerStatus> = raw
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect();
        all.sort_by(|a, b| a.worker.cmp(&b.worker));
        Ok(all)
    }
}
