//! What one job run leaves behind besides its output: guest log lines,
//! progress and timings. Serializable, so `spool call --json` and job records
//! can carry it as it is.

use serde::Serialize;
use std::time::Duration;

/// Where a log line came from and how severe it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// `log::trace!` in the guest.
    Trace,
    /// `log::debug!` in the guest.
    Debug,
    /// `log::info!` in the guest.
    Info,
    /// `log::warn!` in the guest.
    Warn,
    /// `log::error!` in the guest.
    Error,
    /// A line the guest printed to stdout.
    Stdout,
    /// A line the guest printed to stderr (panic messages land here).
    Stderr,
}

impl LogLevel {
    /// The level's name, as JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Stdout => "stdout",
            LogLevel::Stderr => "stderr",
        }
    }
}

/// One line of a job's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Severity or stream.
    pub level: LogLevel,
    /// The text, cut to the per-job byte cap.
    pub message: String,
}

/// A job's log, capped in lines and bytes per job.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobLog {
    /// The kept lines, in order.
    pub lines: Vec<LogLine>,
    /// Lines dropped because the caps were reached (stdout/stderr bytes past
    /// their cap count as one dropped line each stream).
    pub dropped: usize,
    #[serde(skip)]
    bytes: usize,
    #[serde(skip)]
    max_lines: usize,
    #[serde(skip)]
    max_bytes: usize,
}

impl JobLog {
    pub(crate) fn new(max_lines: usize, max_bytes: usize) -> Self {
        JobLog {
            max_lines,
            max_bytes,
            ..JobLog::default()
        }
    }

    /// Keep a line if the caps allow it; long lines are cut, not dropped.
    pub(crate) fn push(&mut self, level: LogLevel, mut message: String) {
        let room = self.max_bytes.saturating_sub(self.bytes);
        if self.lines.len() >= self.max_lines || room == 0 {
            self.dropped += 1;
            return;
        }
        if message.len() > room {
            let mut end = room;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        self.bytes += message.len();
        self.lines.push(LogLine { level, message });
    }

    /// Split captured stream bytes into lines and keep them.
    pub(crate) fn push_stream(&mut self, level: LogLevel, bytes: &[u8], dropped_bytes: usize) {
        for line in String::from_utf8_lossy(bytes).lines() {
            if !line.is_empty() {
                self.push(level, line.to_string());
            }
        }
        if dropped_bytes > 0 {
            self.dropped += 1;
        }
    }
}

/// The latest progress a guest reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all; 0 when unknown.
    pub total: u64,
}

/// Where the time of one job went.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    /// Creating the store and instantiating the component.
    #[serde(with = "micros")]
    pub instantiate: Duration,
    /// Running `handle`.
    #[serde(with = "micros")]
    pub run: Duration,
}

/// Durations as whole microseconds in JSON (`"run": 41`).
pub(crate) mod micros {
    use serde::Serializer;
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(value.as_micros()).unwrap_or(u64::MAX))
    }
}
