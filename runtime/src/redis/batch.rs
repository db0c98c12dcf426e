//! Many plain commands in one round trip, on a standalone server or a
//! cluster: one pipeline, or on a cluster one per slot, sent at once (a
//! cluster refuses a pipeline whose keys span slots).

use super::AsyncRedis;
use redis::cluster_routing::Slot;
use redis::{Cmd, RedisResult, Value};

/// Commands to run together, each with the key that places it.
#[derive(Default, Debug)]
pub struct Batch {
    cmds: Vec<(Slot, Cmd)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Add `cmd`, which is about `key`.
    pub fn add(&mut self, key: impl AsRef<[u8]>, cmd: Cmd) -> &mut Self {
        self.cmds.push((Slot::for_key(key), cmd));
        self
    }

    /// Run every command; their replies in order. One failed send (or a
    /// refused command) fails the whole: for reads and for writes that
    /// may be sent again.
    pub async fn run(self, redis: &AsyncRedis) -> RedisResult<Vec<Value>> {
        let groups = self.groups(redis.is_cluster());
        let sent = futures_util::future::join_all(groups.iter().map(|(_, pipe)| {
            let mut conn = redis.conn();
            async move { pipe.query_async::<Vec<Value>>(&mut conn).await }
        }))
        .await;
        let mut replies: Vec<Option<Value>> = vec![None; self.cmds.len()];
        for ((positions, _), outcome) in groups.iter().zip(sent) {
            for (&i, value) in positions.iter().zip(outcome?) {
                replies[i] = Some(value);
            }
        }
        Ok(replies
            .into_iter()
            .map(|v| v.unwrap_or(Value::Nil))
            .collect())
    }

    /// [`Batch::run`] on a blocking connection of `redis`'s pool, one
    /// slot's pipeline after another.
    pub fn run_blocking(self, redis: &super::SyncRedis) -> RedisResult<Vec<Value>> {
        redis.with_connection(|conn| {
            let cluster = matches!(conn, super::SyncConn::Cluster(_));
            let mut replies: Vec<Option<Value>> = vec![None; self.cmds.len()];
            for (positions, pipe) in self.groups(cluster) {
                let values: Vec<Value> = pipe.query(conn)?;
                for (&i, value) in positions.iter().zip(values) {
                    replies[i] = Some(value);
                }
            }
            Ok(replies
                .into_iter()
                .map(|v| v.unwrap_or(Value::Nil))
                .collect())
        })
    }

    /// (positions, pipeline) per slot, or one for everything.
    fn groups(&self, cluster: bool) -> Vec<(Vec<usize>, redis::Pipeline)> {
        let mut groups: Vec<(Option<Slot>, Vec<usize>, redis::Pipeline)> = Vec::new();
        for (i, (slot, cmd)) in self.cmds.iter().enumerate() {
            let slot = cluster.then_some(*slot);
            let at = match groups.iter().position(|(s, _, _)| *s == slot) {
                Some(at) => at,
                None => {
                    groups.push((slot, Vec::new(), redis::pipe()));
                    groups.len() - 1
                }
            };
            groups[at].1.push(i);
            groups[at].2.add_command(cmd.clone());
        }
        groups.into_iter().map(|(_, p, pipe)| (p, pipe)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_pipeline_per_slot_on_a_cluster_one_otherwise() {
        let mut batch = Batch::new();
        for key in ["p:{a}:x", "p:{b}:x", "p:{a}:y"] {
            batch.add(key, redis::cmd("EXISTS").arg(key).clone());
        }
        let on_cluster: Vec<Vec<usize>> = batch.groups(true).into_iter().map(|(p, _)| p).collect();
        assert_eq!(on_cluster, vec![vec![0, 2], vec![1]]);
        let alone: Vec<Vec<usize>> = batch.groups(false).into_iter().map(|(p, _)| p).collect();
        assert_eq!(alone, vec![vec![0, 1, 2]]);
    }
}
