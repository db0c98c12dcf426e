//! Progress of a long job, shown to whoever waits for it.

/// Report that `done` of `total` units of work are finished (`total` 0 when
/// the amount is unknown). Cheap: call it as often as is useful; the host
/// keeps the latest value.
pub fn report(done: u64, total: u64) {
    crate::bindings::spool::job::progress::report(done, total);
}
