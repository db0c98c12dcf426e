//! Live progress (`progress.lua`): a worker writes its running jobs'
//! latest progress reports into their records a few times a second, so a
//! record read or the API's progress stream shows them while jobs run.

use super::{Queue, QueueError};

/// One running job's latest report: tenant, job id, its lease token, and
/// the progress as JSON (`{"done", "total"}`).
pub type ProgressReport = (String, String, String, String);

impl Queue {
    /// Write each job's progress into its record if it still runs under
    /// that token. One pipeline; returns how many records were written.
    pub async fn report_progress(&self, reports: &[ProgressReport]) -> Result<u64, QueueError> {
        if reports.is_empty() {
            return Ok(0);
        }
        let groups = super::ops::by_tenant_of(reports, |(t, _, _, _)| t.as_str());
        let keys: Vec<String> = groups.iter().map(|(t, _)| self.tenant_keys(t)).collect();
        let calls: Vec<_> = groups
            .iter()
            .zip(&keys)
            .map(|((_, indices), keys)| {
                let mut inv = self.inner.scripts.progress.key(keys);
                for &i in indices {
                    let (_, id, token, json) = &reports[i];
                    inv.arg(id).arg(token).arg(json);
                }
                inv
            })
            .collect();
        let replies = self.run_calls("report progress", &calls).await?;
        let mut written = 0;
        for reply in replies {
            match reply.and_then(|r| {
                redis::from_redis_value::<u64>(r)
                    .map_err(|e| QueueError::protocol("report progress", e.to_string()))
            }) {
                Ok(n) => written += n,
                // Progress is informational: a tenant's failure is logged,
                // the others' reports stand.
                Err(e) => tracing::debug!("progress not written: {e}"),
            }
        }
        Ok(written)
    }
}
