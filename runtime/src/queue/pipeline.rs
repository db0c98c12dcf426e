//! Many script calls in one round trip: one per tenant of a claim, an ack
//! batch or a heartbeat, since each tenant's keys are a slot of their own.

use super::{Queue, QueueError};
use redis::{ScriptInvocation, Value};

impl Queue {
    /// Run `calls` in one pipeline; one reply each, in order. A pipeline
    /// does not load scripts by itself: after a `NOSCRIPT` (Redis restarted,
    /// or its script cache was flushed) every script is loaded and the
    /// pipeline sent once more. That is safe because each pipeline holds
    /// calls of one script, so a missing script failed every call of it.
    pub(crate) async fn run_calls(
        &self,
        op: &'static str,
        calls: &[ScriptInvocation<'_>],
    ) -> Result<Vec<Value>, QueueError> {
        let mut conn = self.redis.conn();
        if let [only] = calls {
            self.count_round_trip();
            let reply: Value = only
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.error(op, e))?;
            return Ok(vec![reply]);
        }
        let mut pipe = redis::pipe();
        for call in calls {
            pipe.invoke_script(call);
        }
        for loaded in [false, true] {
            self.count_round_trip();
            match pipe.query_async::<Vec<Value>>(&mut conn).await {
                Ok(replies) => return Ok(replies),
                Err(e)
                    if !loaded
                        && e.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    for call in calls.iter().take(1) {
                        self.count_round_trip();
                        call.load_async(&mut conn)
                            .await
                            .map_err(|e| self.error(op, e))?;
                    }
                }
                Err(e) => return Err(self.error(op, e)),
            }
        }
        Err(QueueError::protocol(
            op,
            "scripts missing after loading them",
        ))
    }
}
