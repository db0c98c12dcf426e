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
    ///
    /// On a Redis Cluster the calls go as one pipeline per slot (each
    /// tenant's keys and the queue's own are slots of their own, often on
    /// different masters), all at once: a pipeline that failed to send is
    /// the error of its own calls; `Err` only when every one failed.
    pub(crate) async fn run_raw(
        &self,
        op: &'static str,
        calls: &[Call<'_>],
    ) -> Result<Vec<redis::RedisResult<Value>>, QueueError> {
        let groups = self.by_slot(calls);
        if groups.len() <= 1 {
            let all: Vec<usize> = (0..calls.len()).collect();
            return self
                .run_group(calls, &all)
                .await
                .map_err(|e| self.error(op, e));
        }
        let sent =
            futures_util::future::join_all(groups.iter().map(|g| self.run_group(calls, g))).await;
        let mut results: Vec<Option<redis::RedisResult<Value>>> =
            calls.iter().map(|_| None).collect();
        let mut first_error = None;
        let mut any_sent = false;
        for (group, outcome) in groups.iter().zip(sent) {
            match outcome {
                Ok(replies) => {
                    any_sent = true;
                    for (&i, reply) in group.iter().zip(replies) {
                        results[i] = Some(reply);
                    }
                }
                Err(e) => {
                    for &i in group {
                        results[i] = Some(Err(e.clone()));
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if !any_sent => Err(self.error(op, e)),
            _ => Ok(results
                .into_iter()
                .map(|r| r.unwrap_or(Ok(Value::Nil)))
                .collect()),
        }
    }

    /// The positions of `calls` grouped by the cluster slot of their first
    /// key, in order of first appearance; one group when not a cluster.
    fn by_slot(&self, calls: &[Call<'_>]) -> Vec<Vec<usize>> {
        if !self.redis.is_cluster() {
            return vec![(0..calls.len()).collect()];
        }
        let mut groups: Vec<(redis::cluster_routing::Slot, Vec<usize>)> = Vec::new();
        for (i, call) in calls.iter().enumerate() {
            let slot = redis::cluster_routing::Slot::for_key(call.first_key());
            match groups.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, group)) => group.push(i),
                None => groups.push((slot, vec![i])),
            }
        }
        groups.into_iter().map(|(_, g)| g).collect()
    }

    /// Run the calls at positions `todo` in one pipeline (all in one slot
    /// on a cluster); one result each, in `todo`'s order. `Err` when the
    /// first send failed.
    async fn run_group(
        &self,
        calls: &[Call<'_>],
        todo: &[usize],
    ) -> Result<Vec<redis::RedisResult<Value>>, redis::RedisError> {
        let mut conn = self.redis.conn();
        let mut results: Vec<Option<redis::RedisResult<Value>>> =
            todo.iter().map(|_| None).collect();
        // Positions in `todo` (and `results`) still to send.
        let mut pending: Vec<usize> = (0..todo.len()).collect();
        // At most: sent, the library found missing and loaded (or refused:
        // EVALSHA from then on), a script found missing and loaded.
        for attempt in 0..3 {
            let functions = !self.inner.eval_only.load(Ordering::Relaxed);
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for &k in &pending {
                pipe.add_command(calls[todo[k]].command(functions));
            }
            self.count_round_trip();
            let sent = Instant::now();
            let replies: Vec<redis::RedisResult<Value>> = match pipe.query_async(&mut conn).await {
                Ok(replies) => replies,
                Err(e) if attempt == 0 => return Err(e),
                Err(e) => {
                    for &k in &pending {
                        results[k] = Some(Err(e.clone()));
                    }
                    break;
                }
            };
            let mut again = Vec::new();
            for (&k, reply) in pending.iter().zip(replies) {
                match missing(&reply) {
                    Some(why) if attempt < 2 => again.push((k, why)),
                    _ => results[k] = Some(reply),
                }
            }
            pending = Vec::new();
            for (k, why) in again {
                let fun = calls[todo[k]].fun;
                match self.make_present(&mut conn, &why, fun, sent).await {
                    Ok(()) => pending.push(k),
                    Err(e) => results[k] = Some(Err(e)),
                }
            }
            if pending.is_empty() {
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
