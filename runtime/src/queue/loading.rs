//! Getting the queue's scripts into Redis when a call finds them missing:
//! the function library (`FUNCTION LOAD`), or, on a Redis without
//! functions, each script (`SCRIPT LOAD`). See queue/scripts.rs.

use super::Queue;
use super::scripts::Fun;
use crate::redis::Conn;
use redis::Value;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Why a call was refused before it ran, so that sending it again after
/// loading applies it once.
pub(super) enum Missing {
    /// `NOSCRIPT`: Redis restarted, or its script cache was flushed.
    Script,
    /// `Function not found`: the library is not loaded (a restart,
    /// `FUNCTION FLUSH`, or the first call of this version).
    Function,
    /// This Redis has no functions (6.2, KeyDB, …) or this user may not
    /// use them (an ACL): the scripts go by `EVALSHA` from now on.
    NoFunctions,
}

/// Whether `reply` is a refusal that loading fixes.
pub(super) fn missing(reply: &redis::RedisResult<Value>) -> Option<Missing> {
    let Err(e) = reply else { return None };
    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) {
        return Some(Missing::Script);
    }
    if e.code() == Some("ERR") && e.detail() == Some("Function not found") {
        return Some(Missing::Function);
    }
    no_functions(e).then_some(Missing::NoFunctions)
}

/// `FCALL` or `FUNCTION` is an unknown command, or one this user may not
/// run. (Only those commands' own refusals: a `NOPERM` for a key, or from
/// inside a script, names no such command.)
fn no_functions(e: &redis::RedisError) -> bool {
    let detail = e.detail().unwrap_or_default().to_ascii_lowercase();
    let names_one = ["fcall", "function"]
        .iter()
        .any(|c| detail.contains(&format!("'{c}")) || detail.contains(&format!("`{c}")));
    let refused = e.code() == Some("NOPERM") || detail.starts_with("unknown command");
    names_one && refused
}

impl Queue {
    /// Make the script of a call that was refused for `why` present, so
    /// that the call can be sent again. `sent` is when the refused call
    /// went out: a library loaded since then by another pipeline of this
    /// process is not loaded again.
    pub(super) async fn make_present(
        &self,
        conn: &mut Conn,
        why: &Missing,
        fun: &Fun,
        sent: Instant,
    ) -> Result<(), redis::RedisError> {
        match why {
            Missing::NoFunctions => {
                self.use_eval("FCALL was refused");
                Ok(())
            }
            Missing::Function => self.load_library(conn, sent).await,
            Missing::Script => {
                self.count_round_trip();
                let _: String = fun.eval.prepare_invoke().load_async(conn).await?;
                Ok(())
            }
        }
    }

    /// `FUNCTION LOAD REPLACE` the library, once for all the pipelines that
    /// found it missing at about the same time.
    async fn load_library(&self, conn: &mut Conn, sent: Instant) -> Result<(), redis::RedisError> {
        let mut loaded = self.inner.library_loaded.lock().await;
        if matches!(*loaded, Some(at) if at >= sent) {
            return Ok(());
        }
        self.count_round_trip();
        let reply: redis::RedisResult<String> = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(&self.inner.scripts.library)
            .query_async(conn)
            .await;
        match reply {
            Ok(_) => {
                *loaded = Some(Instant::now());
                Ok(())
            }
            Err(e) if no_functions(&e) => {
                self.use_eval(&e.to_string());
                Ok(())
            }
            // Out of memory, a read-only replica, loading…: this call
            // fails as Redis said (retryable or not), and the next one
            // tries again.
            Err(e) => Err(e),
        }
    }

    /// Send the scripts by `EVALSHA` for good (said once in the log).
    fn use_eval(&self, why: &str) {
        if !self.inner.eval_only.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "redis will not run the queue's function library ({why}); \
                 sending its scripts with EVALSHA instead (slower per call)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_function_commands_own_refusals_switch_to_evalsha() {
        let parse = |s: &str| -> redis::RedisResult<Value> {
            redis::Parser::new()
                .parse_value(s.as_bytes())?
                .extract_error()
        };
        let kind = |s: &str| match missing(&parse(s)) {
            Some(Missing::Script) => "script",
            Some(Missing::Function) => "function",
            Some(Missing::NoFunctions) => "none",
            None => "-",
        };
        assert_eq!(kind("-NOSCRIPT No matching script.\r\n"), "script");
        assert_eq!(kind("-ERR Function not found\r\n"), "function");
        assert_eq!(
            kind("-ERR unknown command 'FCALL', with args beginning with: 'x' \r\n"),
            "none"
        );
        assert_eq!(
            kind("-NOPERM this user has no permissions to run the 'fcall' command\r\n"),
            "none"
        );
        assert_eq!(
            kind(
                "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"
            ),
            "-"
        );
        assert_eq!(
            kind(
                "-ERR Error running script @user_function: 12: NOPERM no permissions to run the 'hset' command\r\n"
            ),
            "-"
        );
    }
}
