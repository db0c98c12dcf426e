use spool_sdk::{JobError, handler};

#[handler]
fn run() -> Result<String, JobError> {
    Ok(String::new())
}

fn main() {}
