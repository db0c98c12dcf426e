//! Builds every crate in `plugins/` for `wasm32-wasip2` with the SDK in this
//! repository, copies the components to `target/plugins/`, and tells the
//! tests where they are (`SPOOL_TEST_PLUGINS`).
//!
//! The nested cargo uses its own target directory (`target/wasm`), so it
//! never waits on the lock of the build that runs this script.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest
        .parent()
        .expect("tests/ lives in the workspace root");
    let plugins = root.join("plugins");
    let target_dir = root.join("target").join("wasm");
    let out_dir = root.join("target").join("plugins");

    for watched in ["plugins", "sdk", "wit"] {
        rerun_if_changed(&root.join(watched));
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // Settings meant for the host build must not leak into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        command.env_remove(var);
    }
    let status = command.status().expect("running cargo to build plugins/");
    if !status.success() {
        panic!(
            "building plugins/ for wasm32-wasip2 failed ({status}); if the target is missing, run: rustup target add wasm32-wasip2"
        );
    }

    std::fs::create_dir_all(&out_dir).expect("creating target/plugins");
    let built = target_dir.join("wasm32-wasip2").join("release");
    for entry in std::fs::read_dir(&built).expect("reading the wasm build directory") {
        let path = entry.expect("listing built plugins").path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let name = path.file_name().expect("a file name");
            std::fs::copy(&path, out_dir.join(name)).expect("copying a plugin to target/plugins");
        }
    }
    println!("cargo:rustc-env=SPOOL_TEST_PLUGINS={}", out_dir.display());
}

/// Watch the sources of a directory, skipping build output. Directories
/// are named too: a file or crate added later (a new fixture) changes its
/// directory, which cargo checks, though no file it already knew changed.
fn rerun_if_changed(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    println!("cargo:rerun-if-changed={}", dir.display());
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            rerun_if_changed(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
