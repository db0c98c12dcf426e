use spool_sdk::{JobError, handler};

#[handler]
async fn run(input: String) -> Result<String, JobError> {
    Ok(input)
}

fn main() {}
