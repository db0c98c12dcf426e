// A JSON handler that also takes the job compiles (one handler per crate).
use spool_sdk::{Job, JobError, handler};

#[derive(serde::Deserialize)]
struct Input {
    name: String,
}

#[handler]
fn greet(input: Input, job: &Job) -> Result<String, JobError> {
    Ok(format!("{} from {}", input.name, job.tenant))
}

fn main() {}
