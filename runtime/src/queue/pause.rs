//! Pausing and resuming a tenant, or one group of it, in one queue:
//! nothing new starts, running jobs finish, queued ones wait.

use super::announce::Announce;
use super::{Queue, QueueError};
use redis::Value;

impl Queue {
    /// Pause (`pause`) or resume `tenant`, or only its `group`. Returns
    /// whether that changed anything (false: it was already so). Takes
    /// effect at the next claim: a claim under way when it lands may still
    /// start the jobs it took.
    pub async fn set_paused(
        &self,
        tenant: &str,
        group: Option<&str>,
        pause: bool,
    ) -> Result<bool, QueueError> {
        if let Some(g) = group {
            super::names::check_group(g).map_err(|reason| QueueError::Invalid { reason })?;
        }
        let keys = self.tenant_keys(tenant);
        let mut inv = self.inner.scripts.control.key(&keys);
        inv.arg(if pause { "pause" } else { "resume" })
            .arg(group.unwrap_or(""));
        let reply = self.run_all("pause or resume", &[inv]).await?;
        let reply = reply.into_iter().next().unwrap_or(Value::Nil);
        let (heard, rest) = Announce::split(tenant, reply, "pause or resume")?;
        // A pause is announced too: it registers the tenant, so that lists
        // show it before it ever enqueued.
        let heard = heard.unwrap_or(Announce {
            tenant: tenant.to_string(),
            seq: 0,
            timer: 0,
            ready: false,
        });
        self.announce_or_warn(std::slice::from_ref(&heard), "pause or resume")
            .await;
        Ok(matches!(rest.first(), Some(Value::Int(1))))
    }
}
