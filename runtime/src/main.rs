//! The `spool` binary: everything lives in the library's `cli` module.

/// mimalloc rather than glibc's allocator: a worker allocates and frees
/// small buffers for every job (Redis replies, records, sandbox state), and
/// glibc's malloc and free were a quarter of its CPU time under load
/// (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(spool_runtime::cli::run())
}
