//! `spool bench --workers N`: the jobs run in N `spool worker` processes
//! instead of the bench's own worker, to measure how a fleet on one Redis
//! scales (issue 13: two workers drain faster than one until Redis is the
//! limit).

use crate::ids::PluginName;
use crate::plugins::scan;
use crate::queue::QueueConfig;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// How long a worker may take to load the plugin and say so.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// What the worker processes are given.
pub(super) struct Spec<'a> {
    /// The plugin file under test.
    pub file: &'a Path,
    /// The names it serves (one per tenant).
    pub serve: &'a [PluginName],
    /// A directory of the bench's own, for the plugins and artifacts.
    pub dir: &'a Path,
    pub queue: &'a QueueConfig,
    pub concurrency: Option<usize>,
    pub batch: usize,
    pub prefetch: usize,
    pub ack_linger: std::time::Duration,
}

/// Running worker processes; stopped (killed: every job has finished by
/// then) when dropped.
pub(super) struct Workers {
    children: Vec<Child>,
}

impl Workers {
    /// Start `n` workers and wait until each has loaded the plugin (its
    /// `worker starting` log line).
    pub fn start(n: usize, spec: &Spec<'_>) -> Result<Workers, String> {
        let plugins = spec.dir.join("plugins");
        for name in spec.serve {
            let to = scan::file_for(&plugins, name);
            let copied = to
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::copy(spec.file, &to));
            copied
                .map_err(|e| format!("copying {} to {}: {e}", spec.file.display(), to.display()))?;
        }
        let exe = std::env::current_exe().map_err(|e| format!("finding the spool binary: {e}"))?;
        let mut workers = Workers {
            children: Vec::new(),
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let last_lines: Vec<Arc<Mutex<String>>> = (0..n).map(|_| Arc::default()).collect();
        for (k, last) in last_lines.iter().enumerate() {
            let mut child = worker_command(&exe, spec, &plugins, k)
                .spawn()
                .map_err(|e| format!("starting worker {k} ({}): {e}", exe.display()))?;
            let stderr = child.stderr.take().expect("stderr is piped");
            workers.children.push(child);
            let (ready, last) = (ready_tx.clone(), Arc::clone(last));
            // Read its log: say when it is ready, keep its last line (the
            // reason, if it stops), and keep draining it so that a full
            // pipe never blocks the worker.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains("worker starting") {
                        let _ = ready.send(k);
                    }
                    *last
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = line;
                }
            });
        }
        workers.wait_ready(&ready_rx, &last_lines, spec.file)?;
        Ok(workers)
    }

    /// Until every worker said it started; a worker that exits first is
    /// the error, with its last log line.
    fn wait_ready(
        &mut self,
        ready: &mpsc::Receiver<usize>,
        last_lines: &[Arc<Mutex<String>>],
        file: &Path,
    ) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        let mut waiting = self.children.len();
        while waiting > 0 {
            if ready.recv_timeout(Duration::from_millis(100)).is_ok() {
                waiting -= 1;
                continue;
            }
            for (k, child) in self.children.iter_mut().enumerate() {
                if let Ok(Some(status)) = child.try_wait() {
                    let last = last_lines[k]
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    return Err(format!(
                        "worker {k} exited ({status}) before it started: {last}"
                    ));
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "a worker did not load {} within {}s",
                    file.display(),
                    READY_WITHIN.as_secs()
                ));
            }
        }
        Ok(())
    }

    /// CPU seconds the workers have used (user + system, from
    /// `/proc/PID/stat`, in clock ticks of 10 ms).
    pub fn cpu_seconds(&self) -> f64 {
        self.children
            .iter()
            .filter_map(|c| std::fs::read_to_string(format!("/proc/{}/stat", c.id())).ok())
            .filter_map(|stat| ticks(&stat))
            .sum::<u64>() as f64
            / 100.0
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn worker_command(exe: &Path, spec: &Spec<'_>, plugins: &Path, k: usize) -> Command {
    let q = spec.queue;
    let mut cmd = Command::new(exe);
    // Only what the bench says: a SPOOL_* setting of the caller's (a
    // worker id, a timeout) would change what is measured, or give every
    // worker the same id.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SPOOL_") {
            cmd.env_remove(&name);
        }
    }
    cmd.arg("worker")
        .arg("--plugins")
        .arg(plugins)
        .arg("--redis")
        .arg(&q.url)
        .arg("--prefix")
        .arg(&q.prefix)
        .arg("--queue")
        .arg(&q.queue)
        .arg("--keep-succeeded")
        .arg(
            q.keep_succeeded
                .map_or("all".to_string(), |k| k.to_string()),
        )
        .arg("--artifact-cache")
        .arg(spec.dir.join(format!("artifacts-{k}")))
        .arg("--batch")
        .arg(spec.batch.to_string())
        .arg("--prefetch")
        .arg(spec.prefetch.to_string())
        .arg("--ack-linger")
        .arg(format!("{}us", spec.ack_linger.as_micros()))
        .env("SPOOL_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(c) = spec.concurrency {
        cmd.arg("--concurrency").arg(c.to_string());
    }
    cmd
}

/// utime + stime of a `/proc/PID/stat` line (fields 14 and 15, counted
/// after the command name, which may hold spaces).
fn ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_past_a_command_name_with_spaces() {
        let stat =
            "4242 (spool w (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 9 0 1 0";
        assert_eq!(ticks(stat), Some(280));
        assert_eq!(ticks("4242 (spool) S 1"), None);
    }
}
