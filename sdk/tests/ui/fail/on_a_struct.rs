use spool_sdk::{JobError, handler};

#[handler]
struct NotAFunction;

fn main() {}
