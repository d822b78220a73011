#!/usr/bin/env bash
# The whole test suite: unit, integration, cluster and doc tests.
# Installs what the tests need on a fresh Debian machine first.
set -euo pipefail
cd "$(dirname "$0")/.."
# Beyond the Rust toolchain (1.95), the tests need a C linker for rustc
# (gcc), in the cluster tests pgrep and kill (procps), and, to read the
# activity job's Parquet files with DuckDB, python3 with venv (the test
# makes a virtual environment under target/ and installs duckdb from PyPI
# into it once).
bash scripts/install-deps.sh gcc procps python3 python3-venv
# Tests that need an example or the CLI binary build it themselves.
cargo test --workspace --all-targets
# A custom job's light dependency: the DSL and operators without the bundled
# jobs and the command-line tool still build.
cargo build -p keyflow --lib --no-default-features --features args
cargo test --workspace --doc
