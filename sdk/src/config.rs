//! The plugin's configuration values, set by the operator (plugin manifest or
//! `spool call --config key=value`), never by the job's input.

use crate::JobError;
use std::str::FromStr;

/// The value of `key`, or `None` when it is not set.
pub fn get(key: &str) -> Option<String> {
    crate::bindings::spool::job::config::get(key)
}

/// The value of `key` parsed as `T`; `None` when it is not set, and an
/// [`JobError::InvalidInput`] naming `config.<key>` when it does not parse.
pub fn parse<T: FromStr>(key: &str) -> Result<Option<T>, JobError> {
    match get(key) {
        None => Ok(None),
        Some(raw) => raw.parse().map(Some).map_err(|_| {
            JobError::invalid_input(
                format!("config.{key}"),
                format!("a value of type {}", std::any::type_name::<T>()),
                raw,
            )
        }),
    }
}
