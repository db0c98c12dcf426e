//! Reading files that others may have placed: plugin files, manifests and
//! cached artifacts. A FIFO or a device must not hang or exhaust the worker,
//! so files are opened non-blocking without following a final symlink for
//! the cache, checked to be regular files on the open descriptor, and read
//! only up to a size cap.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Read `path` if it is a regular file of at most `cap` bytes. With
/// `no_follow`, a symlink as the final component is refused.
pub(crate) fn read_regular(
    path: &Path,
    cap: u64,
    no_follow: bool,
) -> std::io::Result<(Vec<u8>, std::fs::Metadata)> {
    let mut flags = libc::O_NONBLOCK;
    if no_follow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = File::options().read(true).custom_flags(flags).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} bytes, more than the {cap}-byte limit", meta.len()),
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("more than the {cap}-byte limit"),
        ));
    }
    Ok((bytes, meta))
}
