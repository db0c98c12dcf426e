// Only the macro's error is compared: rustc's warnings vary by version.
#![allow(unused)]

use spool_sdk::{JobError, handler};

#[handler(bytes)]
fn run(input: String) -> Result<Vec<u8>, JobError> {
    Ok(input.into_bytes())
}

fn main() {}
