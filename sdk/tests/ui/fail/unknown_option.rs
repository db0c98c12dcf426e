use spool_sdk::{JobError, handler};

#[handler(xml)]
fn run(input: String) -> Result<String, JobError> {
    Ok(input)
}

fn main() {}
