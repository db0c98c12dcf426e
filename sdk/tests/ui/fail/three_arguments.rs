// Only the macro's error is compared: rustc's warnings vary by version.
#![allow(unused)]

use spool_sdk::{JobError, handler};

#[handler]
fn run(a: String, b: &spool_sdk::Job, c: u32) -> Result<String, JobError> {
    Ok(a)
}

fn main() {}
