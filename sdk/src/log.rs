//! Log lines that land in the job's record, tagged with the job, tenant and
//! plugin by the host. The host caps lines per job, so a chatty handler
//! cannot flood the log.
//!
//! ```ignore
//! spool_sdk::log::info!("resized to {}x{}", w, h);
//! ```

use crate::bindings::spool::job::log as wit;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the handler recovered from.
    Warn,
    /// A failure.
    Error,
}

/// Record one log line. The macros below call this; call it directly when the
/// level is chosen at run time.
pub fn write(level: Level, message: &str) {
    let level = match level {
        Level::Trace => wit::Level::Trace,
        Level::Debug => wit::Level::Debug,
        Level::Info => wit::Level::Info,
        Level::Warn => wit::Level::Warn,
        Level::Error => wit::Level::Error,
    };
    wit::log(level, message);
}

/// Log at a given [`Level`] with `format!` arguments.
#[doc(hidden)]
#[macro_export]
macro_rules! __spool_log {
    ($level:expr, $($arg:tt)+) => {
        $crate::log::write($level, &::std::format!($($arg)+))
    };
}

/// Log at trace level: `trace!("x = {}", x)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __spool_trace { ($($arg:tt)+) => { $crate::__spool_log!($crate::log::Level::Trace, $($arg)+) }; }
/// Log at debug level: `debug!("x = {}", x)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __spool_debug { ($($arg:tt)+) => { $crate::__spool_log!($crate::log::Level::Debug, $($arg)+) }; }
/// Log at info level: `info!("x = {}", x)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __spool_info { ($($arg:tt)+) => { $crate::__spool_log!($crate::log::Level::Info, $($arg)+) }; }
/// Log at warn level: `warn!("x = {}", x)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __spool_warn { ($($arg:tt)+) => { $crate::__spool_log!($crate::log::Level::Warn, $($arg)+) }; }
/// Log at error level: `error!("x = {}", x)`.
#[doc(hidden)]
#[macro_export]
macro_rules! __spool_error { ($($arg:tt)+) => { $crate::__spool_log!($crate::log::Level::Error, $($arg)+) }; }

#[doc(inline)]
pub use crate::__spool_debug as debug;
#[doc(inline)]
pub use crate::__spool_error as error;
#[doc(inline)]
pub use crate::__spool_info as info;
#[doc(inline)]
pub use crate::__spool_log as log;
#[doc(inline)]
pub use crate::__spool_trace as trace;
#[doc(inline)]
pub use crate::__spool_warn as warn;
