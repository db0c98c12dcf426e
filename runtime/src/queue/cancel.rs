//! Cancelling a job that has not started (`cancel.lua`): the HTTP API's
//! `POST /v1/jobs/ID/cancel`.

use super::announce::Announce;
use super::record::Status;
use super::{Queue, QueueError};

/// What a cancel found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// It was waiting; now it is `cancelled` and will not run.
    Now,
    /// It had started or ended already (its status): nothing changed.
    Too(Status),
}

impl Queue {
    /// Cancel `tenant`'s job `id` if it has not started (queued, delayed
    /// or retrying). [`QueueError::NotFound`] when there is no such job.
    pub async fn cancel(&self, tenant: &str, id: &str) -> Result<Cancelled, QueueError> {
        let keys = self.tenant_keys(tenant);
        let [ttl, _, _] = self.ttl_args();
        let mut call = self.inner.scripts.cancel.key(&keys);
        call.arg(id).arg(ttl);
        let reply = self
            .run_all("cancel job", std::slice::from_ref(&call))
            .await?
            .into_iter()
            .next()
            .unwrap_or(redis::Value::Nil);
        let (heard, rest) = Announce::split(tenant, reply, "cancel job")?;
        if let Some(heard) = heard {
            self.announce_or_warn(&[heard], "cancel job").await;
        }
        let outcome = rest.into_iter().next().and_then(crate::redis::value::text);
        match outcome.as_deref() {
            Some("ok") => Ok(Cancelled::Now),
            Some("missing") => Err(QueueError::NotFound { id: id.to_string() }),
            Some(other) => Status::parse(other)
                .map(Cancelled::Too)
                .ok_or_else(|| QueueError::protocol("cancel job", other.to_string())),
            None => Err(QueueError::protocol("cancel job", "no outcome")),
        }
    }
}
