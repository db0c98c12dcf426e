use spool_sdk::{JobError, handler};

#[handler]
fn run(input: String) {
    let _ = input;
}

fn main() {}
