// Only the macro's error is compared: rustc's warnings vary by version.
#![allow(unused)]

use spool_sdk::{JobError, handler};

#[handler]
fn run(input: &str) -> Result<String, JobError> {
    Ok(input.to_string())
}

fn main() {}
