//! The one wasmtime `Engine` a process uses, configured for many short jobs,
//! and the thread that advances its epoch so deadlines fire.

use crate::locks::Doze;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Bytes of each memory and table slot kept resident between jobs (reset in
/// place). Enough for a typical handler's stack top, data and small heap;
/// past it, pages go back to the kernel as usual.
const KEEP_RESIDENT: usize = 2 * 1024 * 1024;

/// Most linear memories one component may define, over all its modules.
pub const MAX_MEMORIES: u32 = 2;
/// Most tables one component may define, over all its modules.
pub const MAX_TABLES: u32 = 4;
/// Most core module instances one component may create.
pub const MAX_CORE_INSTANCES: u32 = 8;

/// Process-wide sandbox settings: the ceilings that per-job [`super::Limits`]
/// must stay under, and the size of the instance pool.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Largest memory any job may be allowed (`--memory` cannot exceed it).
    pub max_memory: u64,
    /// Size of the wasm stack of every job, in bytes.
    pub max_wasm_stack: usize,
    /// How many jobs may hold a sandbox at once (pool slots).
    pub pool_size: u32,
    /// Epoch tick: the granularity of deadlines.
    pub tick: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            max_memory: 1024 * 1024 * 1024,
            max_wasm_stack: 1024 * 1024,
            pool_size: 256,
            tick: Duration::from_millis(2),
        }
    }
}

/// Build the engine: pooling allocator (instantiation in microseconds,
/// memory reused across jobs), epoch interruption (preemptive deadlines at
/// no measurable cost), a capped wasm stack, and only the wasm features a
/// `wasm32-wasip2` Rust guest needs.
pub(crate) fn build(config: &SandboxConfig) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    // A Rust component instantiates its main module plus a few small shim
    // modules; four core instances and tables per component leave headroom.
    // Per component, checked when a plugin is compiled (the error names
    // the count): a Rust handler has 1 memory, 2 tables and 3 core
    // instances. Unbounded, a component that instantiates many modules
    // would multiply the memory cap and take many pool slots per job.
    pool.max_memories_per_component(MAX_MEMORIES)
        .max_tables_per_component(MAX_TABLES)
        .max_core_instances_per_component(MAX_CORE_INSTANCES)
        .total_component_instances(config.pool_size)
        .total_core_instances(config.pool_size * 4)
        .total_memories(config.pool_size)
        .total_tables(config.pool_size * 4)
        .total_stacks(0)
        .max_memory_size(usize::try_from(config.max_memory).unwrap_or(usize::MAX))
        // Reset a returned slot by rewriting only its dirty pages (found with
        // PAGEMAP_SCAN on Linux 6.7+) instead of `madvise`: the next job then
        // takes no page faults on them. Profiling `hello` showed faults and
        // madvise as ~70% of the per-job cost before this.
        .pagemap_scan(Enabled::Auto);
    if kernel_has_pagemap_scan() {
        // Without the ioctl, keeping pages resident means a `memset` of the
        // whole budget per job: slower than the faults it saves.
        pool.linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);
    }

    let mut wasm = Config::new();
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .epoch_interruption(true)
        .max_wasm_stack(config.max_wasm_stack)
        .wasm_component_model(true);
    Engine::new(&wasm)
}

/// Whether this is Linux 6.7 or later, where `PAGEMAP_SCAN` exists.
fn kernel_has_pagemap_scan() -> bool {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return false;
    };
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (6, 7)
}

/// Job stores alive in this process (of any engine): the tickers keep
/// time only while there is one.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Where the tickers sleep while no job runs.
static IDLE: Doze = Doze::new();

/// The longest a ticker sleeps at a time while no job runs (a start wakes
/// it at once; this only bounds how long an engine that is gone keeps its
/// thread).
const IDLE_NAP: Duration = Duration::from_millis(250);

/// A job's store is alive, from before it is made until after it is
/// dropped: the tickers tick (woken if they slept). A deadline is set in
/// ticks from the epoch at the store's start, and ticks resume from there,
/// so a job gets its whole timeout and no more.
pub(crate) struct Ticking(());

impl Ticking {
    pub fn start() -> Ticking {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        IDLE.wake();
        Ticking(())
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Advances the engine's epoch every `tick` until the engine is dropped,
/// while a job runs; in between it sleeps (an idle worker's ticker woke
/// 500 times a second for nothing). Holds only a weak reference, so it
/// never keeps an engine alive.
pub(crate) fn start_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("spool-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(tick);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
                if RUNNING.load(Ordering::SeqCst) == 0 {
                    IDLE.sleep(IDLE_NAP, || RUNNING.load(Ordering::SeqCst) > 0);
                }
            }
        })
        .expect("spawning the epoch ticker thread");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A job that starts while the ticker sleeps is stopped at its
    /// deadline, not when the ticker's nap would have ended: the start
    /// wakes it. (While other tests' jobs run the ticker does not sleep,
    /// and this passes whatever the wake does.)
    #[test]
    fn a_job_started_while_the_ticker_sleeps_is_stopped_at_its_deadline() {
        let config = SandboxConfig::default();
        let engine = build(&config).unwrap();
        start_ticker(&engine, config.tick);
        let wat = r#"(module (func (export "spin") (loop br 0)))"#;
        let module = wasmtime::Module::new(&engine, wat).unwrap();
        for _ in 0..3 {
            // Idle long enough for the ticker to lie down.
            std::thread::sleep(Duration::from_millis(30));
            let started = Instant::now();
            let _ticking = Ticking::start();
            let mut store = wasmtime::Store::new(&engine, ());
            store.set_epoch_deadline(10);
            let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
            let spin = instance
                .get_typed_func::<(), ()>(&mut store, "spin")
                .unwrap();
            let trap = spin.call(&mut store, ()).unwrap_err();
            assert_eq!(
                trap.downcast_ref::<wasmtime::Trap>(),
                Some(&wasmtime::Trap::Interrupt)
            );
            let took = started.elapsed();
            assert!(
                took < IDLE_NAP / 2,
                "stopped after {took:?} (deadline 10 ticks of {:?}): the ticker slept through the start",
                config.tick
            );
        }
    }
}
