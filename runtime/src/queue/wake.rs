//! An idle worker's wait for work: `BLPOP` on the queue's wake list, ended
//! on time by this host's clock.
//!
//! Redis times out a blocked client only when its event loop runs, and an
//! idle server runs it `hz` times a second (10 by default): a `BLPOP` of
//! 45 ms on a quiet server returns after up to 100 ms. A worker waiting for
//! a timer (a rate refilling, a delayed job due) then starts its job late,
//! and a tenant limited to 20 jobs a second got 18. On a cluster the queue's
//! own slot is often on a quiet master while the tenants' are busy, so it
//! showed there first. So the worker keeps its own timer: when it fires
//! first, `CLIENT UNBLOCK` (sent on the shared connection to the same
//! master) ends the wait at once, and the `BLPOP`'s reply is still read,
//! so a wake token popped at that moment is never lost.

use super::{Queue, QueueError};
use crate::redis::Conn;
use std::time::Duration;

/// A blocking connection for [`Queue::wait_for_work`], and its client id
/// on the master of the wake list (none: unknown, or `CLIENT` refused by
/// an ACL, and then waits end when Redis ends them).
#[derive(Debug)]
pub struct WakeWait {
    conn: Conn,
    client_id: Option<i64>,
}

impl Queue {
    /// A connection to wait for work on.
    pub async fn wake_waiter(&self) -> Result<WakeWait, QueueError> {
        let mut conn = self.blocking_connection().await?;
        let client_id = self.client_id(&mut conn).await;
        Ok(WakeWait { conn, client_id })
    }

    /// Block until an enqueue wakes us or `timeout` passes (by this host's
    /// clock, see the module doc).
    pub async fn wait_for_work(
        &self,
        wait: &mut WakeWait,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        self.count_round_trip();
        let (reply, unblocked) = self.blpop_until(wait, timeout).await;
        match unblocked {
            None | Some(Ok(true)) => {}
            // Not blocked any more when the timer fired: Redis' own timeout
            // came first, or the id is no longer this connection's (it
            // reconnected; ids are never reused): ask again.
            Some(Ok(false)) => wait.client_id = self.client_id(&mut wait.conn).await,
            // `CLIENT` refused (an ACL): Redis' timeouts it is.
            Some(Err(_)) => wait.client_id = None,
        }
        let token = reply.map_err(|e| self.error("wait for work", e))?;
        // `t:TENANT` names a tenant with work (ring/prelude.lua): the next
        // claim visits it without a pick.
        let tenant = token.and_then(|(_, t)| t.strip_prefix("t:").map(str::to_string));
        *crate::locks::lock(&self.inner.hint) = tenant;
        Ok(())
    }

    /// `BLPOP` the wake list, ended by `CLIENT UNBLOCK` if this host's
    /// timer fires first; the reply, and whether the unblock found the
    /// connection blocked (none: not sent).
    async fn blpop_until(
        &self,
        wait: &mut WakeWait,
        timeout: Duration,
    ) -> (
        redis::RedisResult<Option<(String, String)>>,
        Option<redis::RedisResult<bool>>,
    ) {
        use redis::AsyncCommands;
        let key = self.key("wake");
        let id = wait.client_id;
        let blpop = wait.conn.blpop(&key, timeout.as_secs_f64().max(0.01));
        tokio::pin!(blpop);
        tokio::select! {
            reply = &mut blpop => (reply, None),
            () = tokio::time::sleep(timeout + Duration::from_millis(2)), if id.is_some() => {
                let unblock = redis::cmd("CLIENT").arg("UNBLOCK").arg(id).clone();
                let unblocked: redis::RedisResult<i64> =
                    crate::redis::query_at(&mut self.redis.conn(), &key, &unblock).await;
                // Read the reply even so: a token popped just now is ours.
                (blpop.await, Some(unblocked.map(|n| n == 1)))
            }
        }
    }

    /// `CLIENT ID` of `conn` on the master of the wake list.
    async fn client_id(&self, conn: &mut Conn) -> Option<i64> {
        let id = redis::cmd("CLIENT").arg("ID").clone();
        crate::redis::query_at(conn, &self.key("wake"), &id)
            .await
            .ok()
    }
}
