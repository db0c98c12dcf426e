//! Glue the `#[handler]` macro expands to. Not a public API: names here may
//! change in any release.

use crate::bindings::spool::job::types::{
    InvalidInput as WitInvalidInput, Job as WitJob, JobError as WitJobError,
};
use crate::{Job, JobError};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::bindings::__export_handler as export_handler;
pub use crate::bindings::Guest;
pub use crate::bindings::spool::job::types::{Job as RawJob, JobError as RawJobError};

/// Length of [`VERSION_BYTES`].
pub const VERSION_LEN: usize = crate::VERSION.len();

/// [`crate::VERSION`] as a fixed array, for the custom section the macro emits
/// into the plugin crate (a `#[used]` static in the plugin itself survives
/// linking; one in this library could be dropped).
pub const VERSION_BYTES: [u8; VERSION_LEN] = {
    let src = crate::VERSION.as_bytes();
    let mut out = [0u8; VERSION_LEN];
    let mut i = 0;
    while i < VERSION_LEN {
        out[i] = src[i];
        i += 1;
    }
    out
};

fn split(job: WitJob) -> (Job, Vec<u8>) {
    let WitJob {
        id,
        tenant,
        plugin,
        attempt,
        content_type,
        payload,
    } = job;
    (
        Job {
            id,
            tenant,
            plugin,
            attempt,
            content_type,
        },
        payload,
    )
}

fn to_wit(error: JobError) -> WitJobError {
    match error {
        JobError::InvalidInput {
            field,
            expected,
            got,
        } => WitJobError::InvalidInput(WitInvalidInput {
            field,
            expected,
            got,
        }),
        JobError::Retryable(message) => WitJobError::Retryable(message),
        JobError::Fatal(message) => WitJobError::Fatal(message),
    }
}

/// Short name of a type for error messages: `hello::Input` → `Input`.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// The field a decode error is about: serde's path, completed with the
/// name in "missing field `x`" (serde reports those at the parent).
fn field_name(path: &str, message: &str) -> String {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    match (path, missing) {
        (".", Some(name)) => name.to_string(),
        (".", None) => "$".to_string(),
        (path, Some(name)) => format!("{path}.{name}"),
        (path, None) => path.to_string(),
    }
}

/// Run a JSON handler: decode the payload into `T`, call `f`, encode `U`.
pub fn run_json<T, U, E, F>(job: WitJob, f: F) -> Result<Vec<u8>, WitJobError>
where
    T: DeserializeOwned,
    U: Serialize,
    E: Into<JobError>,
    F: FnOnce(T, &Job) -> Result<U, E>,
{
    let (job, payload) = split(job);
    let mut decoder = serde_json::Deserializer::from_slice(&payload);
    let expected = || format!("JSON input for {}", short_type_name::<T>());
    let input: T = match serde_path_to_error::deserialize(&mut decoder) {
        Ok(input) => input,
        Err(error) => {
            let path = error.path().to_string();
            let got = error.into_inner().to_string();
            let field = field_name(&path, &got);
            return Err(to_wit(JobError::invalid_input(field, expected(), got)));
        }
    };
    if let Err(error) = decoder.end() {
        let got = error.to_string();
        return Err(to_wit(JobError::invalid_input("$", expected(), got)));
    }
    let output = f(input, &job).map_err(|e| to_wit(e.into()))?;
    serde_json::to_vec(&output).map_err(|e| {
        to_wit(JobError::fatal(format!(
            "could not encode the output as JSON: {e}"
        )))
    })
}

/// Run a bytes handler: pass the payload through as it is.
pub fn run_bytes<E, F>(job: WitJob, f: F) -> Result<Vec<u8>, WitJobError>
where
    E: Into<JobError>,
    F: FnOnce(Vec<u8>, &Job) -> Result<Vec<u8>, E>,
{
    let (job, payload) = split(job);
    f(payload, &job).map_err(|e| to_wit(e.into()))
}
