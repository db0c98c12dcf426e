//! Sending what must not run twice: on [`AsyncRedis::once_conn`] (whose
//! client never resends), sent again only when a cluster refused it unrun
//! (the slot is elsewhere, or not served right now). On one server
//! nothing is sent again: what Redis refused is the call's own error. The
//! queue's script pipelines go through [`send_until_served`]; the fleet
//! store's scripts through [`AsyncRedis::eval_once`].

use super::AsyncRedis;
use redis::Value;
use std::time::Instant;

impl AsyncRedis {
    /// Run a script (`EVAL`, its whole `source`: these are rare calls, and
    /// a missing script is then never a reason to send twice) with one key
    /// and `args`, at most once: what Redis refused unrun goes again (see
    /// [`send_until_served`]); a lost connection is an error, and the
    /// script may or may not have run.
    pub async fn eval_once(
        &self,
        source: &str,
        key: &str,
        args: &[&[u8]],
    ) -> redis::RedisResult<Value> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let eval = pipe.cmd("EVAL").arg(source).arg(1).arg(key);
        for arg in args {
            eval.arg(*arg);
        }
        let mut conn = self.once_conn();
        send_until_served(&mut conn, &pipe)
            .await?
            .pop()
            .unwrap_or(Ok(Value::Nil))
    }
}

/// Send `pipe` (one slot's calls, on [`AsyncRedis::once_conn`]) until a
/// master serves it: a reply that
/// says the slot is elsewhere or not served now (`MOVED`, `ASK`,
/// `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `READONLY`, `LOADING`) means
/// no call of it ran, so it goes again after a backoff (10 ms doubling,
/// at most 5 s in all). `ASK` is not followed: the scripts' keys are not
/// all declared, and on a slot being migrated they would run against
/// half-moved data; they wait until the slot has moved instead. Anything
/// else (a lost connection: the calls may have run) is the caller's.
pub async fn send_until_served(
    conn: &mut crate::redis::Conn,
    pipe: &redis::Pipeline,
) -> redis::RedisResult<Vec<redis::RedisResult<Value>>> {
    send_until_served_with(conn, pipe, || pipe.clone()).await
}

/// [`send_until_served`], sending `again()` after the first try: what the
/// pipeline holds may not keep (the queue's calls leave out their estimate
/// of Redis' clock when sent again, queue/scripts.rs).
pub async fn send_until_served_with(
    conn: &mut crate::redis::Conn,
    pipe: &redis::Pipeline,
    again: impl Fn() -> redis::Pipeline,
) -> redis::RedisResult<Vec<redis::RedisResult<Value>>> {
    let started = Instant::now();
    let mut pause = std::time::Duration::from_millis(10);
    let mut resend = None;
    loop {
        let sent = resend.as_ref().unwrap_or(pipe);
        match sent.query_async(conn).await {
            Err(e) if not_served(&e) && started.elapsed() < NOT_SERVED_FOR => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
                resend.get_or_insert_with(&again);
            }
            other => return other,
        }
    }
}

/// How long a pipeline is sent again while its slot is not served.
const NOT_SERVED_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Redis refused the command before running it: its slot is elsewhere or
/// not served right now.
pub(crate) fn not_served(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind as S};
    matches!(
        e.kind(),
        ErrorKind::Server(
            S::Moved
                | S::Ask
                | S::TryAgain
                | S::ClusterDown
                | S::MasterDown
                | S::ReadOnly
                | S::BusyLoading
        )
    )
}
