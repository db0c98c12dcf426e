//! The events stream workers block on: an entry per pin change (written by
//! the version scripts) or result-cache purge. A worker acts on each and
//! reports the id of the last one it acted on (see
//! [`super::WorkerStatus::events_seen`]).

use super::{DeployError, FleetStore};
use crate::redis::Conn;
use std::time::Duration;

/// An entry of the events stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its stream id.
    pub id: String,
    /// A cache purge's scope (JSON); none for a pin change.
    pub purge: Option<String>,
}

impl FleetStore {
    /// A connection for [`FleetStore::wait_event`]: no response timeout.
    pub async fn blocking_connection(&self) -> Result<Conn, DeployError> {
        Ok(self.redis.blocking().await?)
    }

    /// The id of the newest pin event, `0-0` when there is none: wait for
    /// events after it.
    pub async fn last_event(&self) -> Result<String, DeployError> {
        let mut conn = self.redis.conn();
        let newest: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg(self.key("events"))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error("read the deploy events", e))?;
        Ok(newest
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_string(), |(id, _)| id))
    }

    /// Block up to `timeout` for events after `after`; returns them, oldest
    /// first (none on timeout).
    pub async fn wait_event(
        &self,
        conn: &mut Conn,
        after: &str,
        timeout: Duration,
    ) -> Result<Vec<Event>, DeployError> {
        type Reply = Option<Vec<(String, Vec<(String, Vec<(String, String)>)>)>>;
        let reply: Reply = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1000)
            .arg("BLOCK")
            .arg(
                u64::try_from(timeout.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )
            .arg("STREAMS")
            .arg(self.key("events"))
            .arg(after)
            .query_async(conn)
            .await
            .map_err(|e| self.error("wait for deploy events", e))?;
        Ok(reply
            .into_iter()
            .flatten()
            .flat_map(|(_, entries)| entries)
            .map(|(id, fields)| Event {
                id,
                purge: fields
                    .into_iter()
                    .find(|(k, _)| k == "purge")
                    .map(|(_, v)| v),
            })
            .collect())
    }

    /// Tell every worker to drop what a cache purge removed from its
    /// memory: `scope` is the purge's scope, JSON. Returns the event's id
    /// (see [`WorkerStatus::events_seen`]).
    pub async fn announce_purge(&self, scope: &str) -> Result<String, DeployError> {
        let mut conn = self.redis.conn();
        redis::cmd("XADD")
            .arg(self.key("events"))
            .arg("MAXLEN")
            .arg("~")
            .arg(1000)
            .arg("*")
            .arg("purge")
            .arg(scope)
            .query_async::<String>(&mut conn)
            .await
            .map_err(|e| self.error("announce a cache purge", e))
    }
}
