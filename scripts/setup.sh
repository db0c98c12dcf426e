#!/usr/bin/env bash
# Install what building and testing Spool needs and a fresh machine may lack:
# the wasm32-wasip2 Rust target (plugins are built for it), redis-server
# (the queue; tests start their own servers and clusters on free ports, and
# the bench scripts talk to them with redis-cli), Chromium and chromedriver
# (the dashboard's browser tests) and redis-py (the Python enqueuer example,
# run by the tests).
set -euo pipefail
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "==> installing the wasm32-wasip2 Rust target"
  rustup target add wasm32-wasip2
fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  echo "==> installing redis-server"
  if command -v apt-get >/dev/null; then
    $sudo apt-get install -y redis-server >/dev/null 2>&1 \
      || { $sudo apt-get update >/dev/null && $sudo apt-get install -y redis-server >/dev/null; }
  elif command -v brew >/dev/null; then
    brew install redis
  else
    echo "setup: install redis-server (https://redis.io/docs/latest/operate/oss_and_stack/install/)" >&2
    exit 1
  fi
fi
# The dashboard's browser tests drive Debian's Chromium through
# chromedriver (WebDriver); nothing is downloaded at test time.
if ! command -v chromedriver >/dev/null || ! { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then
  echo "==> installing chromium and chromium-driver (for the dashboard's browser tests)"
  if command -v apt-get >/dev/null; then
    $sudo apt-get install -y chromium chromium-driver >/dev/null 2>&1 \
      || { $sudo apt-get update >/dev/null && $sudo apt-get install -y chromium chromium-driver >/dev/null; }
  else
    echo "setup: install Chromium and chromedriver for the browser tests" >&2
    exit 1
  fi
fi
if ! python3 -c 'import redis' 2>/dev/null; then
  echo "==> installing redis-py (for examples/python)"
  # pip where it may install (pyenv, venvs); Debian's package where the
  # system Python is "externally managed".
  python3 -m pip install --quiet redis 2>/dev/null \
    || python3 -m pip install --quiet --user redis 2>/dev/null \
    || { command -v apt-get >/dev/null && $sudo apt-get install -y python3-redis >/dev/null; } \
    || true
  if ! python3 -c 'import redis' 2>/dev/null; then
    echo "setup: could not install redis-py for $(command -v python3); install it (pip install redis, or apt-get install python3-redis)" >&2
    exit 1
  fi
fi
