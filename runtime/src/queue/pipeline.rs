//! Many script calls in one round trip: one per tenant of a claim, an ack
//! batch or a heartbeat, since each tenant's keys are a slot of their own.
//! Each call answers for itself: one tenant's broken key fails its own
//! call, never the others'.

use super::{Queue, QueueError};
use redis::{ScriptInvocation, Value};

impl Queue {
    /// Run `calls` in one pipeline; one result each, in order (`Err`: Redis
    /// refused that call, naming the error). A pipeline does not load
    /// scripts by itself: calls refused with `NOSCRIPT` (Redis restarted,
    /// or its script cache was flushed) are sent once more after loading
    /// their script — only those, so no call is applied twice.
    pub(crate) async fn run_calls(
        &self,
        op: &'static str,
        calls: &[ScriptInvocation<'_>],
    ) -> Result<Vec<Result<Value, QueueError>>, QueueError> {
        Ok(self
            .run_raw(op, calls)
            .await?
            .into_iter()
            .map(|r| r.map_err(|e| self.error(op, e)))
            .collect())
    }

    /// [`Queue::run_calls`] with each call's error as Redis gave it (for
    /// replies a caller decodes itself, such as `enqueue.lua`'s `QUOTA`).
    pub(crate) async fn run_raw(
        &self,
        op: &'static str,
        calls: &[ScriptInvocation<'_>],
    ) -> Result<Vec<redis::RedisResult<Value>>, QueueError> {
        let mut conn = self.redis.conn();
        let mut results: Vec<Option<redis::RedisResult<Value>>> =
            calls.iter().map(|_| None).collect();
        let mut todo: Vec<usize> = (0..calls.len()).collect();
        for attempt in 0..2 {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for &i in &todo {
                pipe.invoke_script(&calls[i]);
            }
            self.count_round_trip();
            let replies: Vec<redis::RedisResult<Value>> = pipe
                .query_async(&mut conn)
                .await
                .map_err(|e| self.error(op, e))?;
            let mut missing = Vec::new();
            for (&i, reply) in todo.iter().zip(replies) {
                let no_script = matches!(&reply, Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript));
                if no_script && attempt == 0 {
                    missing.push(i);
                } else {
                    results[i] = Some(reply);
                }
            }
            if missing.is_empty() {
                break;
            }
            // Load each missing call's script (a claim's pipeline carries
            // two scripts; loading one twice is harmless, and rare).
            for &i in &missing {
                self.count_round_trip();
                let _: String = calls[i]
                    .load_async(&mut conn)
                    .await
                    .map_err(|e| self.error(op, e))?;
            }
            todo = missing;
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(Ok(Value::Nil)))
            .collect())
    }

    /// [`Queue::run_calls`] where any refused call fails the whole (for
    /// operations that report one result: a purge, an operator's read).
    pub(crate) async fn run_all(
        &self,
        op: &'static str,
        calls: &[ScriptInvocation<'_>],
    ) -> Result<Vec<Value>, QueueError> {
        self.run_calls(op, calls).await?.into_iter().collect()
    }
}
