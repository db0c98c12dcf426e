//! Waiting for the running workers to confirm a fleet-wide change (a
//! deploy, a rollback, an unpin, a cache purge) through the reports they
//! publish on every change, and saying who did not.

use super::exit;
use crate::config::parse_wait;
use crate::deploy::{FleetStore, WorkerStatus};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WaitArgs {
    /// How long to wait for the running workers to confirm (0s: do not
    /// wait).
    #[arg(long, default_value = "10s", value_parser = parse_wait)]
    pub wait: Duration,
}

/// Where one worker stands.
pub(crate) enum State {
    Done,
    Refused(String),
    /// Not yet: what it does instead, and why it may be late.
    Pending(String),
}

/// Poll the reports until no worker is pending or `wait` is over; print
/// "N of M workers GOAL (T ms)" and who refused or is late. `idle` is said
/// when no worker runs. Returns the exit code: 1 on a refusal, 75 when a
/// worker is late.
pub(crate) async fn settle(
    store: &FleetStore,
    wait: &WaitArgs,
    goal: &str,
    idle: &str,
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
            println!("{idle}");
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
                    "spool: worker {} {what} after {}s",
                    worker.worker,
                    wait.as_secs_f64()
                );
                if code == exit::OK {
                    code = exit::RETRYABLE;
                }
            }
        }
    }
    code
}
