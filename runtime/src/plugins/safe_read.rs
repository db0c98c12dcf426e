//! Reading files that others may have placed: plugin files, manifests and
//! cached artifacts. A FIFO or a device must not hang or exhaust the worker,
//! so files are opened non-blocking, checked to be regular files on the open
//! descriptor, and read only up to a size cap.
//!
//! Files of a watched plugins directory and of the artifact cache are read
//! with [`read_beneath`]: through a handle on that directory, resolving
//! every component beneath it (`cap-primitives`, the layer under
//! `cap_std::fs::Dir`), so that no `..`, absolute path or symlink leads a
//! read outside it — a symlinked `.toml` cannot make the loader read, and
//! quote, a file elsewhere on the host.

use std::fs::File;
use std::io::{Error, ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Read `path` if it is a regular file of at most `cap` bytes. With
/// `no_follow`, a symlink as the final component is refused. For files the
/// operator names; files of a watched directory go through
/// [`read_beneath`].
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
    read_open(file, cap)
}

/// [`read_regular`] of `path`, which must lie inside `root`, resolved
/// beneath a handle on the directory that holds it (`root` itself, or a
/// tenant's folder `root/TENANT`): a path or symlink that leads outside it
/// is refused (`PermissionDenied`), so a tenant's file cannot stand for
/// another tenant's. With `no_follow`, a symlink as the final component is
/// refused even inside.
pub(crate) fn read_beneath(
    root: &Path,
    path: &Path,
    cap: u64,
    no_follow: bool,
) -> std::io::Result<(Vec<u8>, std::fs::Metadata)> {
    use cap_primitives::fs::{OpenOptions, OpenOptionsExt as _};
    let climbs = path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir));
    if climbs || !path.starts_with(root) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} is not inside {}", path.display(), root.display()),
        ));
    }
    let root = path
        .parent()
        .filter(|dir| dir.starts_with(root))
        .unwrap_or(root);
    let inside = path.strip_prefix(root).unwrap_or(path);
    let dir = cap_primitives::fs::open_ambient_dir(root, cap_primitives::ambient_authority())?;
    let mut flags = libc::O_NONBLOCK;
    if no_follow {
        flags |= libc::O_NOFOLLOW;
    }
    let mut options = OpenOptions::new();
    options.read(true).custom_flags(flags);
    if no_follow {
        // `O_NOFOLLOW` among the custom flags is honoured by the kernel's
        // beneath-resolution; cap-primitives' fallback for kernels without
        // it may follow a final symlink, so check the entry itself too.
        let entry = cap_primitives::fs::stat(&dir, inside, cap_primitives::fs::FollowSymlinks::No)?;
        if entry.file_type().is_symlink() {
            return Err(Error::new(ErrorKind::InvalidInput, "a symlink"));
        }
    }
    let file = cap_primitives::fs::open(&dir, inside, &options).map_err(|e| {
        if e.kind() == ErrorKind::PermissionDenied {
            Error::new(
                ErrorKind::PermissionDenied,
                format!("it leads outside {} ({e})", root.display()),
            )
        } else {
            e
        }
    })?;
    read_open(file, cap)
}

/// The bytes of an open file: a regular file of at most `cap` bytes.
fn read_open(file: File, cap: u64) -> std::io::Result<(Vec<u8>, std::fs::Metadata)> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    if meta.len() > cap {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} bytes, more than the {cap}-byte limit", meta.len()),
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("more than the {cap}-byte limit"),
        ));
    }
    Ok((bytes, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_beneath_a_directory_never_leave_it() {
        let root = std::env::temp_dir().join(format!("spool-beneath-{}", std::process::id()));
        let outside = root.with_extension("outside");
        std::fs::create_dir_all(root.join("acme")).unwrap();
        std::fs::create_dir_all(root.join("globex")).unwrap();
        std::fs::write(root.join("globex/prod.toml"), "globex's").unwrap();
        std::os::unix::fs::symlink("../globex/prod.toml", root.join("acme/steal.toml")).unwrap();
        std::fs::write(&outside, "secret").unwrap();
        std::fs::write(root.join("acme/ok.toml"), "fine").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("abs.toml")).unwrap();
        std::os::unix::fs::symlink("../spool-beneath-x", root.join("rel.toml")).unwrap();
        std::os::unix::fs::symlink("acme/ok.toml", root.join("inner.toml")).unwrap();
        let read = |name: &str, no_follow| read_beneath(&root, &root.join(name), 1024, no_follow);
        assert_eq!(read("acme/ok.toml", false).unwrap().0, b"fine");
        assert_eq!(
            read("inner.toml", false).unwrap().0,
            b"fine",
            "a symlink inside is fine"
        );
        assert!(
            read("inner.toml", true).is_err(),
            "unless final symlinks are refused"
        );
        for escape in [
            "abs.toml",
            "rel.toml",
            "../spool-beneath-x",
            "acme/steal.toml",
        ] {
            let e = read(escape, false).unwrap_err();
            assert!(!e.to_string().contains("secret"), "{e}");
            assert_ne!(e.kind(), ErrorKind::NotFound, "{escape}: {e}");
        }
        assert!(read_beneath(&root, &outside, 1024, false).is_err());
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_file(&outside);
    }
}
