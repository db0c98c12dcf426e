//! An idle worker's wait for work: `BLPOP` on the queue's wake list, ended
//! on time by this host's clock.
//!
//! Redis times out a blocked client only when its event loop runs, and an
//! idle server runs it `hz` times a second (10 by default): a `BLPOP` of
//! 45 ms on a quiet server returns after up to 100 ms. A worker waiting for
//! a timer (a rate refilling, a delayed job due) then starts its job late,
//! and a tenant limited to 20 jobs a second got 18. On a cluster the queue's
//! own slot is often on a quiet master while the tenants' are busy, so it
//! showed there first. So each wait blocks on two lists, the queue's wake
//! list and one of the waiter's own (same slot), and keeps its own timer:
//! when that fires first, the waiter pushes a token onto its own list
//! over the shared connection, which ends the wait at once. Its reply is
//! still read, so a wake token popped at that moment is never lost. (No
//! `CLIENT UNBLOCK`: it needs an admin ACL, and client ids repeat after a
//! restart or on another node.)

use super::{Queue, QueueError};
use crate::redis::Conn;
use std::time::Duration;

/// A blocking connection for [`Queue::wait_for_work`], and the waiter's
/// own list (`Q:wake:RANDOM`, in the queue's slot).
#[derive(Debug)]
pub struct WakeWait {
    conn: Conn,
    own: String,
}

/// How long a waiter's own list lives after its last token (a worker
/// that died leaves nothing behind for long).
const OWN_LIST_TTL_MS: u64 = 60_000;

impl Queue {
    /// A connection to wait for work on.
    pub async fn wake_waiter(&self) -> Result<WakeWait, QueueError> {
        let conn = self.blocking_connection().await?;
        let own = self.key(&format!("wake:{}", ulid::Ulid::new()));
        Ok(WakeWait { conn, own })
    }

    /// Block until an enqueue wakes us or `timeout` passes (by this host's
    /// clock, see the module doc).
    pub async fn wait_for_work(
        &self,
        wait: &mut WakeWait,
        timeout: Duration,
    ) -> Result<(), QueueError> {
        self.count_round_trip();
        let (reply, nudged) = self.blpop_until(wait, timeout).await;
        let token = reply.map_err(|e| self.error("wait for work", e))?;
        // Nudged, but a real token or Redis' own timeout came first: the
        // nudge waits in the own list and would end the next wait at once.
        if nudged && token.as_ref().is_none_or(|(list, _)| *list != wait.own) {
            let _: redis::RedisResult<()> = redis::cmd("DEL")
                .arg(&wait.own)
                .query_async(&mut self.redis.conn())
                .await;
        }
        // `t:TENANT` names a tenant with work (ring/prelude.lua): the next
        // claim visits it without a pick.
        let tenant = token.and_then(|(_, t)| t.strip_prefix("t:").map(str::to_string));
        *crate::locks::lock(&self.inner.hint) = tenant;
        Ok(())
    }

    /// `BLPOP` the wake list and the own list, ended by a token on the own
    /// list if this host's timer fires first; the reply, and whether the
    /// timer fired.
    async fn blpop_until(
        &self,
        wait: &mut WakeWait,
        timeout: Duration,
    ) -> (redis::RedisResult<Option<(String, String)>>, bool) {
        use redis::AsyncCommands;
        let lists = [self.key("wake"), wait.own.clone()];
        let own = wait.own.clone();
        let blpop = wait.conn.blpop(&lists, timeout.as_secs_f64().max(0.01));
        tokio::pin!(blpop);
        tokio::select! {
            reply = &mut blpop => (reply, false),
            () = tokio::time::sleep(timeout + Duration::from_millis(2)) => {
                let nudge: redis::RedisResult<()> = redis::pipe()
                    .lpush(&own, 1)
                    .ignore()
                    .pexpire(&own, OWN_LIST_TTL_MS as i64)
                    .ignore()
                    .query_async(&mut self.redis.conn())
                    .await;
                if nudge.is_err() {
                    // Redis' own timeout ends the wait.
                    tracing::debug!("could not end an idle wait on time: {nudge:?}");
                }
                // Read the reply even so: a token popped just now is ours.
                (blpop.await, true)
            }
        }
    }
}
