//! After a deploy, a rollback or an unpin: wait until every running worker
//! reports that it serves the change (or refused it), and say so. Workers
//! publish their state on every change, so this normally takes as long as
//! the slowest worker needs to compile the version.

use super::super::exit;
use crate::config::parse_wait;
use crate::deploy::{Store, WorkerStatus};
use crate::queue::PluginName;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WaitArgs {
    /// How long to wait for the running workers to confirm (0s: do not
    /// wait).
    #[arg(long, default_value = "10s", value_parser = parse_wait)]
    wait: Duration,
}

/// Where one worker stands.
enum State {
    Done,
    Refused(String),
    Pending(String),
}

/// Wait until every worker serves `digest` as the pinned `name`.
pub(crate) async fn pinned(store: &Store, name: &PluginName, digest: &str, wait: &WaitArgs) -> u8 {
    let short = &digest[..12.min(digest.len())];
    let refused_path = format!("redis:{name}@{short}");
    let name = name.to_string();
    let judge = |w: &WorkerStatus| {
        let serving = w.plugins.iter().find(|p| p.name == name);
        if serving.is_some_and(|p| p.version == digest && p.source == "deployed") {
            return State::Done;
        }
        if let Some(r) = w.rejected.iter().find(|r| r.path == refused_path) {
            return State::Refused(r.why.clone());
        }
        State::Pending(serving.map_or_else(
            || "serves nothing under that name".to_string(),
            |p| {
                format!(
                    "still serves {} ({})",
                    &p.version[..12.min(p.version.len())],
                    p.source
                )
            },
        ))
    };
    settle(store, wait, &format!("serve {short}"), judge).await
}

/// Wait until no worker serves a pinned version of `name`.
pub(crate) async fn unpinned(store: &Store, name: &PluginName, wait: &WaitArgs) -> u8 {
    let name = name.to_string();
    let judge = |w: &WorkerStatus| match w
        .plugins
        .iter()
        .find(|p| p.name == name && p.source == "deployed")
    {
        None => State::Done,
        Some(p) => State::Pending(format!(
            "still serves the pinned {}",
            &p.version[..12.min(p.version.len())]
        )),
    };
    settle(store, wait, "serve their directory's file", judge).await
}

async fn settle(
    store: &Store,
    wait: &WaitArgs,
    goal: &str,
    judge: impl Fn(&WorkerStatus) -> State,
) -> u8 {
    if wait.wait.is_zero() {
        return exit::OK;
    }
    let started = Instant::now();
    loop {
        let workers = match store.workers().await {
            Ok(workers) => workers,
            Err(e) => {
                eprintln!("spool: could not check the workers: {e}");
                return exit::RETRYABLE;
            }
        };
        if workers.is_empty() {
            println!("no worker is running; each worker loads it when it starts");
            return exit::OK;
        }
        let states: Vec<(&WorkerStatus, State)> = workers.iter().map(|w| (w, judge(w))).collect();
        let pending = states
            .iter()
            .filter(|(_, s)| matches!(s, State::Pending(_)))
            .count();
        if pending == 0 || started.elapsed() >= wait.wait {
            return summary(&states, goal, started.elapsed(), wait.wait);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn summary(states: &[(&WorkerStatus, State)], goal: &str, took: Duration, wait: Duration) -> u8 {
    let done = states
        .iter()
        .filter(|(_, s)| matches!(s, State::Done))
        .count();
    println!(
        "{done} of {} workers {goal} ({} ms)",
        states.len(),
        took.as_millis()
    );
    let mut code = exit::OK;
    let refused = states.iter().any(|(_, s)| matches!(s, State::Refused(_)));
    for (worker, state) in states {
        match state {
            State::Done => {}
            State::Refused(why) => {
                eprintln!(
                    "spool: worker {} refused it (it keeps serving what it served): {why}",
                    worker.worker
                );
                code = exit::FAILED;
            }
            State::Pending(what) => {
                eprintln!(
                    "spool: worker {} {what} after {}s; it may still be compiling (see `spool plugins list`)",
                    worker.worker,
                    wait.as_secs_f64()
                );
                if code == exit::OK {
                    code = exit::RETRYABLE;
                }
            }
        }
    }
    if refused {
        eprintln!(
            "spool: the pin stays for workers that can serve it; `spool plugins rollback NAME` or `unpin NAME` undoes it"
        );
    }
    code
}
