//! The error a handler returns: what failed, what was expected, and whether a
//! retry can help. It maps one-to-one onto the WIT `job-error` variant.

use std::fmt;

/// Why a job failed.
///
/// The variant decides what the platform does next: `InvalidInput` and
/// `Fatal` are never retried, `Retryable` is retried with backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// The input does not have the shape the handler expects.
    InvalidInput {
        /// The field or part of the input that is wrong (`$` for all of it).
        field: String,
        /// What the handler expected there.
        expected: String,
        /// What it got instead.
        got: String,
    },
    /// A transient failure: the same job may succeed when retried.
    Retryable(String),
    /// A permanent failure: retrying cannot help.
    Fatal(String),
}

/// Longest `got` text passed to the host; longer values are cut so that one
/// huge bad input does not become a huge error record.
const MAX_GOT: usize = 200;

impl JobError {
    /// The input's `field` was not what the handler `expected`; it was `got`.
    pub fn invalid_input(
        field: impl Into<String>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        let mut got = got.into();
        if got.len() > MAX_GOT {
            let mut end = MAX_GOT;
            while !got.is_char_boundary(end) {
                end -= 1;
            }
            got.truncate(end);
            got.push('…');
        }
        JobError::InvalidInput {
            field: field.into(),
            expected: expected.into(),
            got,
        }
    }

    /// A failure that may go away on retry (a busy dependency, a timeout).
    pub fn retryable(message: impl Into<String>) -> Self {
        JobError::Retryable(message.into())
    }

    /// A failure that no retry can fix.
    pub fn fatal(message: impl Into<String>) -> Self {
        JobError::Fatal(message.into())
    }

    /// Whether retrying the same job can help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, JobError::Retryable(_))
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::InvalidInput {
                field,
                expected,
                got,
            } => write!(f, "invalid input: {field}: expected {expected}, got {got}"),
            JobError::Retryable(message) => write!(f, "retryable: {message}"),
            JobError::Fatal(message) => write!(f, "fatal: {message}"),
        }
    }
}

impl std::error::Error for JobError {}
