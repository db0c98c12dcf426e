use spool_sdk::{JobError, handler};

#[handler]
fn run(input: String) -> String {
    input
}

fn main() {}
