// Only the macro's error is compared: rustc's warnings vary by version.
#![allow(unused)]

use spool_sdk::{JobError, handler};

#[handler]
async fn run(input: String) -> Result<String, JobError> {
    Ok(input)
}

fn main() {}
