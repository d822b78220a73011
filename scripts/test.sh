#!/usr/bin/env bash
# The whole test suite: unit, integration, cluster and doc tests.
# Installs what the tests need on a fresh Debian machine first.
set -euo pipefail
cd "$(dirname "$0")/.."
# One build from scratch: incremental caches would only add to the disk used.
export CARGO_INCREMENTAL=0
# Beyond the Rust toolchain (1.95), the tests need a C linker for rustc
# (gcc), in the cluster tests pgrep and kill (procps), for the multi-host
# test ip (iproute2) and podman to build the container image, a real Redis
# server and client (redis-server, redis-tools), to read the activity job's
# Parquet files with DuckDB python3 with venv (the test makes a virtual
# environment under target/ and installs duckdb from PyPI into it once), and
# for the dashboard tests headless Chromium, and cmake to build librdkafka
# for the Kafka tests (the `kafka` feature, on in this run).
bash scripts/install-deps.sh gcc cmake procps iproute2 podman redis-server redis-tools python3 python3-venv chromium
# The container image, built from this checkout's binary (a debug build,
# to keep the test run short; deploy/build-image.sh packages the release
# binary by default). The multi-host test runs the pods from its exported
# filesystem.
cargo build --bin keyflow
rm -rf target/image-rootfs
bash deploy/build-image.sh --binary target/debug/keyflow --tag localhost/keyflow:test \
  --export target/image-rootfs
export KEYFLOW_IMAGE_ROOTFS="$PWD/target/image-rootfs"
# Tests that need an example or the CLI binary build it themselves.
cargo test --workspace --all-targets --features kafka
# A custom job's light dependency: the DSL and operators without the bundled
# jobs and the command-line tool still build.
cargo build -p keyflow --lib --no-default-features --features args
cargo test --workspace --doc --features kafka
