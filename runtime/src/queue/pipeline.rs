//! Many script calls in one round trip: one per tenant of a claim, an ack
//! batch or a heartbeat, since each tenant's keys are a slot of their own.
//! Each call answers for itself: one tenant's broken key fails its own
//! call, never the others'.

use super::loading::missing;
use super::scripts::Call;
use super::{Queue, QueueError};
use redis::Value;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Queue {
    /// Run `calls` in one pipeline; one result each, in order (`Err`: Redis
    /// refused that call, naming the error). A pipeline does not load
    /// scripts by itself: calls refused because the function library or a
    /// script is missing (Redis restarted, or was flushed) are sent once
    /// more after loading it (queue/loading.rs) — only those, which did not
    /// run, so no call is applied twice.
    pub(crate) async fn run_calls(
        &self,
        op: &'static str,
        calls: &[Call<'_>],
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
    /// `Err` only when the first send failed (nothing is known of any
    /// call); a failure after that is the error of the calls it concerns,
    /// and the others keep their results.
    pub(crate) async fn run_raw(
        &self,
        op: &'static str,
        calls: &[Call<'_>],
    ) -> Result<Vec<redis::RedisResult<Value>>, QueueError> {
        let mut conn = self.redis.conn();
        let mut results: Vec<Option<redis::RedisResult<Value>>> =
            calls.iter().map(|_| None).collect();
        let mut todo: Vec<usize> = (0..calls.len()).collect();
        // At most: sent, the library found missing and loaded (or refused:
        // EVALSHA from then on), a script found missing and loaded.
        for attempt in 0..3 {
            let functions = !self.inner.eval_only.load(Ordering::Relaxed);
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for &i in &todo {
                pipe.add_command(calls[i].command(functions));
            }
            self.count_round_trip();
            let sent = Instant::now();
            let replies: Vec<redis::RedisResult<Value>> = match pipe.query_async(&mut conn).await {
                Ok(replies) => replies,
                Err(e) if attempt == 0 => return Err(self.error(op, e)),
                Err(e) => {
                    for &i in &todo {
                        results[i] = Some(Err(e.clone()));
                    }
                    break;
                }
            };
            let mut again = Vec::new();
            for (&i, reply) in todo.iter().zip(replies) {
                match missing(&reply) {
                    Some(why) if attempt < 2 => again.push((i, why)),
                    _ => results[i] = Some(reply),
                }
            }
            todo = Vec::new();
            for (i, why) in again {
                match self.make_present(&mut conn, &why, calls[i].fun, sent).await {
                    Ok(()) => todo.push(i),
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            if todo.is_empty() {
                break;
            }
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
        calls: &[Call<'_>],
    ) -> Result<Vec<Value>, QueueError> {
        self.run_calls(op, calls).await?.into_iter().collect()
    }
}
