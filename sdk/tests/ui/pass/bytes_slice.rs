// A bytes handler may borrow its input.
use spool_sdk::{JobError, handler};

#[handler(bytes)]
fn echo(input: &[u8]) -> Result<Vec<u8>, JobError> {
    Ok(input.to_vec())
}

fn main() {}
