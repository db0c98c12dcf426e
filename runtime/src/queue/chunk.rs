//! Splitting a batch into script calls: at most so many items and (past
//! the first item) so many bytes each, so that a batch of large payloads
//! never outgrows the connection's response timeout.

/// Consecutive runs of `items`, each of at most `max_items` items and, once
/// it has one item, under `max_bytes` by `size`. Never an empty run; an
/// item larger than `max_bytes` gets a run of its own.
pub(crate) fn chunks<T>(
    items: &[T],
    max_items: usize,
    max_bytes: usize,
    size: impl Fn(&T) -> usize,
) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut n = 0;
        let mut bytes = 0;
        while n < rest.len() && n < max_items.max(1) && (n == 0 || bytes < max_bytes) {
            bytes += size(&rest[n]);
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn runs_respect_the_count_and_the_bytes_and_keep_every_item() {
        let sizes = [1, 1, 1, 1, 1];
        let runs: Vec<usize> = chunks(&sizes, 2, 100, |s| *s).map(<[_]>::len).collect();
        assert_eq!(runs, [2, 2, 1]);
        let big = [10, 10, 1, 1];
        let runs: Vec<usize> = chunks(&big, 100, 10, |s| *s).map(<[_]>::len).collect();
        assert_eq!(runs, [1, 1, 2]);
        assert_eq!(chunks(&[] as &[usize], 2, 2, |s| *s).count(), 0);
    }
}
