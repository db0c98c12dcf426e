//! The monotonic clock a job sees: wasmtime-wasi's own, except that no
//! timer a guest subscribes to outlasts the job's deadline.
//!
//! Epoch interruption stops a guest only while it runs wasm code. A guest
//! blocked in `wasi:io/poll` on a long sleep (`std::thread::sleep`, a poll
//! with a far timeout) would hold its job thread, and keep its lease
//! renewed, until the sleep ends: as many such jobs as the fleet has job
//! threads would stop every tenant. Clamped here, every such wait ends
//! just after the deadline, and the job ends as `timeout`: at the guest's
//! next wasm instruction that meets the epoch deadline, or, when the epoch
//! ticker runs late and the guest returns first, because a clamped wait
//! ran past the deadline (the guest was told less time passed than it
//! asked for, so its result cannot stand). The other blocking
//! imports cannot wait on anything a guest controls: stdio are captured in
//! memory, there are no files, sockets are refused, and `kv` calls carry
//! their own timeouts.

use std::time::{Duration, Instant};
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::clocks::WasiClocksCtxView;
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::{
    self, Duration as Nanos, Instant as At,
};

/// How long past the deadline a clamped timer still waits: two ticks of
/// the default epoch ticker, so that the deadline has been seen by the
/// time the guest runs again.
pub(crate) const SLACK: Duration = Duration::from_millis(5);

/// The monotonic clock of one job.
pub(crate) struct JobClock<'a> {
    pub wasi: WasiClocksCtxView<'a>,
    pub deadline: Instant,
    /// Set when a timer was cut short to end at the deadline.
    pub clamped: &'a mut bool,
}

impl JobClock<'_> {
    /// The longest a timer may wait from now, in nanoseconds.
    fn most(&self) -> u64 {
        let left = self.deadline.saturating_duration_since(Instant::now()) + SLACK;
        u64::try_from(left.as_nanos()).unwrap_or(u64::MAX)
    }

    /// `wait` nanoseconds, or fewer if they would pass the deadline.
    fn clamp(&mut self, wait: u64) -> u64 {
        let most = self.most();
        if wait > most {
            *self.clamped = true;
        }
        wait.min(most)
    }
}

impl monotonic_clock::Host for JobClock<'_> {
    fn now(&mut self) -> wasmtime::Result<At> {
        self.wasi.now()
    }

    fn resolution(&mut self) -> wasmtime::Result<Nanos> {
        self.wasi.resolution()
    }

    fn subscribe_duration(&mut self, wait: Nanos) -> wasmtime::Result<Resource<DynPollable>> {
        let wait = self.clamp(wait);
        self.wasi.subscribe_duration(wait)
    }

    fn subscribe_instant(&mut self, when: At) -> wasmtime::Result<Resource<DynPollable>> {
        let now = self.wasi.now()?;
        let wait = self.clamp(when.saturating_sub(now));
        self.wasi.subscribe_duration(wait)
    }
}

/// Marks [`JobClock`] as what the linker hands the clock's host functions.
struct Clamped;

impl HasData for Clamped {
    type Data<'a> = JobClock<'a>;
}

/// Replace the monotonic clock `wasmtime_wasi` linked with each job's own,
/// which `clock` gets from the store's data.
pub(crate) fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    clock: fn(&mut T) -> JobClock<'_>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let added = monotonic_clock::add_to_linker::<T, Clamped>(linker, clock);
    linker.allow_shadowing(false);
    added
}
