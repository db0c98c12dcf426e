//! The queue's Lua scripts, as one Redis function library.
//!
//! Every tenant-slot script shares the prelude `lua/lib.lua`; the queue-slot
//! scripts that keep the set of tenants with work share
//! `lua/ring/prelude.lua`. Sent with `EVALSHA`, a script runs its whole
//! prelude on every call: some thirty closures and tables, about 28,000
//! instructions of Redis' time, more than a claim of five jobs spends on
//! the jobs (docs/performance.md). So the scripts are loaded as functions
//! of one library (`FUNCTION LOAD`, Redis >= 7): the preludes run once, at
//! load, and a call is `FCALL`. On a Redis without functions (6.2), or
//! where they are refused (an ACL), the same code runs as `EVALSHA`
//! scripts: the prelude, `begin(KEYS)`, the body.
//!
//! A script may start with definitions made once, at load: the lines
//! before its [`PER_CALL`] marker (constant tables and functions that
//! need nothing of one call). Every table or closure a call makes costs
//! Redis 700–2,000 instructions to allocate and collect (a command called
//! from Lua ~4,700), and the ack made eleven that never change on every
//! call (docs/performance.md, "What a script call costs"). Under `EVALSHA` they
//! run on every call, after the prelude.
//!
//! The library's name and its functions' names carry a hash of its code,
//! so workers of two versions sharing a Redis (a rolling upgrade) each call
//! their own.

use redis::{Script, ToRedisArgs};
use std::sync::LazyLock;

// `pick_tenants` is in both: `pick.lua` calls it, and so does a claim on
// one server, for its caller's next claim (claim.lua).
const PRELUDE: &str = concat!(
    include_str!("lua/lib.lua"),
    include_str!("lua/ring/pick_tenants.lua")
);
const RING_PRELUDE: &str = concat!(
    include_str!("lua/ring/prelude.lua"),
    include_str!("lua/ring/pick_tenants.lua")
);

/// The line that ends a script's load-time definitions (see the module
/// doc); a script without it is all per call.
const PER_CALL: &str = "--[[ per call ]]\n";

/// A script's load-time definitions and its per-call body.
fn split(script: &str) -> (&str, &str) {
    script.split_once(PER_CALL).unwrap_or(("", script))
}

/// The tenant-slot scripts: (name, code).
const TENANT: [(&str, &str); 13] = [
    ("enqueue", include_str!("lua/enqueue.lua")),
    ("claim", include_str!("lua/claim.lua")),
    ("ack", include_str!("lua/ack.lua")),
    ("heartbeat", include_str!("lua/heartbeat.lua")),
    ("progress", include_str!("lua/progress.lua")),
    ("dead_retry", include_str!("lua/dead_retry.lua")),
    ("dead_purge", include_str!("lua/dead_purge.lua")),
    ("cancel", include_str!("lua/cancel.lua")),
    ("recover", include_str!("lua/recover.lua")),
    ("control", include_str!("lua/control.lua")),
    ("stats", include_str!("lua/stats.lua")),
    ("adopt", include_str!("lua/adopt.lua")),
    ("fold", include_str!("lua/fold.lua")),
];

/// Flags of the functions that need some (Redis 7 refuses a function
/// without flags whole when over `maxmemory`, and on a read-only replica):
/// `stats` only reads; `dead_purge`, `reap` and `fold` free memory, which
/// is when they are needed.
const FLAGS: [(&str, &str); 4] = [
    ("stats", "'no-writes'"),
    ("dead_purge", "'allow-oom'"),
    ("reap", "'allow-oom'"),
    ("fold", "'allow-oom'"),
];

/// The queue-slot scripts: (name, code).
const RING: [(&str, &str); 4] = [
    ("announce", include_str!("lua/ring/announce.lua")),
    ("settle", include_str!("lua/ring/settle.lua")),
    ("pick", include_str!("lua/ring/pick.lua")),
    ("reap", include_str!("lua/ring/reap.lua")),
];

/// One script: its function's name in the library, and the same code as
/// an `EVALSHA` script.
#[derive(Debug)]
pub(crate) struct Fun {
    pub function: String,
    pub eval: Script,
}

impl Fun {
    /// A call of this script on `key` (every queue script takes one key).
    pub fn key<K: ToRedisArgs>(&self, key: K) -> Call<'_> {
        let mut keys = Vec::new();
        key.write_redis_args(&mut keys);
        Call {
            fun: self,
            keys,
            args: redis::Cmd::new(),
            moment: None,
        }
    }
}

/// A script call being built: keys and arguments, sent as `FCALL` or
/// `EVALSHA` by the pipeline (queue/pipeline.rs).
pub(crate) struct Call<'a> {
    pub fun: &'a Fun,
    keys: Vec<Vec<u8>>,
    /// The arguments, in one buffer (a `Cmd` holds them so): an ack
    /// carries ~20 per job, and one allocation each showed in the
    /// worker's profile.
    args: redis::Cmd,
    /// The position among `args` of one that holds a moment (an estimate
    /// of Redis' clock, see [`Call::moment_arg`]).
    moment: Option<usize>,
}

impl Call<'_> {
    /// Add one argument (or several, for a value that writes several).
    pub fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        arg.write_redis_args(&mut self.args);
        self
    }

    /// Add Redis' clock as the caller knows it now (µs; `None`: empty, the
    /// script reads `TIME`). Sent with the call's first try only: a call
    /// sent again (after the library or a script was loaded, or on a
    /// cluster whose slot was not served) goes later, and a lease or an
    /// expiry from a moment that old would be that much short
    /// (queue/clock.rs). Its resends send it empty.
    pub fn moment_arg(&mut self, now_us: Option<u64>) -> &mut Self {
        self.moment = Some(self.args.args_iter().count());
        match now_us {
            Some(now) => self.arg(now),
            None => self.arg(""),
        }
    }

    /// The first key: where the call runs on a Redis Cluster.
    pub fn first_key(&self) -> &[u8] {
        self.keys.first().map_or(&[], Vec::as_slice)
    }

    /// The command: `FCALL function` or `EVALSHA sha`, then the keys and
    /// arguments; `again` for a resend (its moment left empty).
    pub fn command(&self, functions: bool, again: bool) -> redis::Cmd {
        let mut cmd = if functions {
            let mut c = redis::cmd("FCALL");
            c.arg(&self.fun.function);
            c
        } else {
            let mut c = redis::cmd("EVALSHA");
            c.arg(self.fun.eval.get_hash());
            c
        };
        cmd.arg(self.keys.len()).arg(&self.keys);
        let stale = self.moment.filter(|_| again);
        for (i, arg) in self.args.args_iter().enumerate() {
            // (`Arg::Cursor` is only written by `cursor_arg`, never here.)
            if let redis::Arg::Simple(bytes) = arg {
                cmd.arg(if stale == Some(i) { &[][..] } else { bytes });
            }
        }
        cmd
    }
}

/// Every script the queue runs, and the library that holds them.
#[derive(Debug)]
pub(crate) struct Scripts {
    /// The library's code, for `FUNCTION LOAD REPLACE`.
    pub library: String,
    pub enqueue: Fun,
    pub claim: Fun,
    pub ack: Fun,
    pub heartbeat: Fun,
    pub progress: Fun,
    pub dead_retry: Fun,
    pub dead_purge: Fun,
    pub cancel: Fun,
    pub recover: Fun,
    pub control: Fun,
    pub stats: Fun,
    pub adopt: Fun,
    pub fold: Fun,
    pub announce: Fun,
    pub settle: Fun,
    pub pick: Fun,
    pub reap: Fun,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(Scripts::build);

impl Scripts {
    /// The scripts, built once per process.
    pub fn get() -> &'static Scripts {
        &SCRIPTS
    }

    fn build() -> Scripts {
        let code = library_body();
        let tag = &blake3::hash(code.as_bytes()).to_hex()[..12];
        let library = format!("#!lua name=spool_{tag}\n{}", code.replace("@LIB@", tag));
        let fun = |name: &str| {
            let (prelude, body) = TENANT
                .iter()
                .map(|(n, b)| (PRELUDE, n, b))
                .chain(RING.iter().map(|(n, b)| (RING_PRELUDE, n, b)))
                .find(|(_, n, _)| **n == name)
                .map(|(p, _, b)| (p, *b))
                .expect("every script is listed");
            let (once, body) = split(body);
            Fun {
                function: format!("spool_{tag}_{name}"),
                eval: Script::new(&format!("{prelude}\n{once}\nbegin(KEYS)\n{body}")),
            }
        };
        Scripts {
            enqueue: fun("enqueue"),
            claim: fun("claim"),
            ack: fun("ack"),
            heartbeat: fun("heartbeat"),
            progress: fun("progress"),
            dead_retry: fun("dead_retry"),
            dead_purge: fun("dead_purge"),
            cancel: fun("cancel"),
            recover: fun("recover"),
            control: fun("control"),
            stats: fun("stats"),
            adopt: fun("adopt"),
            fold: fun("fold"),
            announce: fun("announce"),
            settle: fun("settle"),
            pick: fun("pick"),
            reap: fun("reap"),
            library,
        }
    }
}

/// The library without its first line: each prelude in a block of its
/// own (their names do not meet), each script a function of the block,
/// registered as `spool_@LIB@_NAME`, in a block of its own with its
/// load-time definitions.
fn library_body() -> String {
    let mut code = String::new();
    for (prelude, scripts) in [(PRELUDE, &TENANT[..]), (RING_PRELUDE, &RING[..])] {
        code.push_str("do\n");
        code.push_str(prelude);
        for (name, script) in scripts {
            let flags = FLAGS.iter().find(|(n, _)| n == name).map_or("", |(_, f)| f);
            let (once, body) = split(script);
            code.push_str(&format!(
                "\ndo\n{once}\nredis.register_function{{function_name = 'spool_@LIB@_{name}', \
                 flags = {{ {flags} }}, callback = function(KEYS, ARGV)\nbegin(KEYS)\n{body}\nend}}\nend\n"
            ));
        }
        code.push_str("end\n");
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The arguments of `cmd` after its keys, as text.
    fn args_of(cmd: &redis::Cmd, keys: usize) -> Vec<String> {
        cmd.args_iter()
            .skip(3 + keys)
            .map(|a| match a {
                redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            })
            .collect()
    }

    #[test]
    fn a_call_sent_again_leaves_its_moment_out() {
        let s = Scripts::get();
        let mut call = s.enqueue.key("spool:{q/t}");
        call.arg(86400)
            .moment_arg(Some(1_800_000_000_000_000))
            .arg("id");
        let first = call.command(true, false);
        assert_eq!(args_of(&first, 1), ["86400", "1800000000000000", "id"]);
        let again = call.command(true, true);
        assert_eq!(args_of(&again, 1), ["86400", "", "id"]);
        // A call without a moment is sent again as it was.
        let mut plain = s.enqueue.key("spool:{q/t}");
        plain.arg(86400).arg("id");
        assert_eq!(args_of(&plain.command(false, true), 1), ["86400", "id"]);
    }

    #[test]
    fn every_script_is_a_function_of_the_library_named_by_its_hash() {
        let s = Scripts::get();
        let name = s.library.lines().next().unwrap();
        let tag = name.strip_prefix("#!lua name=spool_").unwrap();
        assert_eq!(tag.len(), 12);
        for fun in [&s.enqueue, &s.claim, &s.pick, &s.settle] {
            assert!(fun.function.starts_with(&format!("spool_{tag}_")));
            assert!(s.library.contains(&format!("'{}'", fun.function)));
        }
        let stats = format!("function_name = 'spool_{tag}_stats', flags = {{ 'no-writes' }}");
        assert!(s.library.contains(&stats), "{stats}");
        assert!(!s.library.contains("@LIB@"));
    }

    #[test]
    fn load_time_definitions_sit_before_their_function_in_a_block_of_their_own() {
        let s = Scripts::get();
        let lib = &s.library;
        let ack = lib
            .find(&format!("function_name = '{}'", s.ack.function))
            .unwrap();
        let claim = lib
            .find(&format!("function_name = '{}'", s.claim.function))
            .unwrap();
        // The ack's constant table is made at load, once, just before the
        // ack's function (after the claim's), not in its callback.
        let leaves = lib.find("local LEAVES = {").unwrap();
        assert!(claim < leaves && leaves < ack, "{claim} {leaves} {ack}");
        // Per call: the first line after the marker opens the callback.
        let body = &lib[ack..];
        let first = body.find("begin(KEYS)\nlocal record_ttl").unwrap();
        assert!(first < body.find("release(id)").unwrap());
        assert!(!lib.contains(PER_CALL));
        // A script without the marker is all per call.
        assert_eq!(split("return 1\n"), ("", "return 1\n"));
    }
}
