//! Running the `spool` binary the way a user does, against a test's Redis.

use spool_tests::fleet::Env;
use std::path::Path;
use std::process::{Command, Output};

pub fn spool_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(crate::SPOOL)
        .args(args)
        .current_dir(dir)
        .env_remove("SPOOL_REDIS")
        .env_remove("SPOOL_PREFIX")
        .output()
        .expect("running spool")
}

pub fn spool(env: &Env, args: &[&str]) -> Output {
    let url = env.redis.url();
    let mut all = args.to_vec();
    all.extend(["--redis", url.as_str()]);
    spool_in(&env.dir, &all)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The command exited with `code` and said `needle` on standard error.
pub fn fails_with(out: &Output, code: i32, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}

/// The command exited 0; its standard output.
pub fn succeeds(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}
