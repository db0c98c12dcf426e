// Only the macro's error is compared: rustc's warnings vary by version.
#![allow(unused)]

use spool_sdk::{JobError, handler};

#[handler]
fn run(input: String) {
    let _ = input;
}

fn main() {}
