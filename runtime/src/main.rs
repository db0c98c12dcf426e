//! The `spool` binary: everything lives in the library's `cli` module.

/// mimalloc rather than glibc's allocator: a worker allocates and frees
/// small buffers for every job (Redis replies, records, sandbox state), and
/// glibc's malloc and free were a quarter of its CPU time under load
/// (docs/performance.md). Built without transparent huge pages (the
/// `no_thp` feature): zeroing a fresh 2 MiB page at each first touch made
/// compiling a plugin 2.5x slower (~250 ms against ~90 ms for `hello`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(spool_runtime::cli::run())
}
