//! Running the `spool` binary the way a user does, against a test's Redis.

use spool_tests::fleet::Env;
use std::path::Path;
use std::process::{Command, Output};

/// `spool ARGS` run in `dir`, with none of the caller's settings.
pub fn spool_command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(crate::SPOOL);
    command.args(args).current_dir(dir);
    spool_tests::without_user_settings(&mut command);
    command
}

/// `spool ARGS` in `dir`, its output once it exits. A command still
/// running after two minutes is killed and fails the test.
pub fn spool_in(dir: &Path, args: &[&str]) -> Output {
    output_within(spool_command(dir, args), args)
}

/// Run `command` to its end, at most two minutes (deploy waits allow 120
/// s of their own); `args` name it in the failure.
pub fn output_within(mut command: Command, args: &[&str]) -> Output {
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running spool");
    // Drain both pipes while waiting, so a chatty command cannot block.
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let stdout = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut buf);
        buf
    });
    let stderr = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut buf);
        buf
    });
    let limit = std::time::Duration::from_secs(150);
    let Some(status) = spool_tests::fleet::exited_within(&mut child, limit) else {
        let _ = child.kill();
        let _ = child.wait();
        let said = String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned();
        panic!("spool {args:?} ran longer than {limit:?}; it said: {said}");
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// `spool ARGS --redis URL` with `input` on its standard input.
pub fn spool_with_stdin(env: &Env, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write as _;
    let url = env.redis.url();
    let mut all = args.to_vec();
    all.extend(["--redis", url.as_str()]);
    let mut child = spool_command(&env.dir, &all)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running spool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("writing spool's standard input");
    child.wait_with_output().expect("running spool")
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
