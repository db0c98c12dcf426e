// Only the macro's error is compared: rustc's warnings vary by version.
#![allow(unused)]

use spool_sdk::{JobError, handler};

#[handler(xml)]
fn run(input: String) -> Result<String, JobError> {
    Ok(input)
}

fn main() {}
