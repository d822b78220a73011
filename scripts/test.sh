#!/usr/bin/env bash
# The whole test suite: unit, integration, cluster and doc tests.
# Installs what the tests need on a fresh Debian machine first.
set -euo pipefail
cd "$(dirname "$0")/.."
# Beyond the Rust toolchain (1.95), the tests need a C linker for rustc
# (gcc) and, in the cluster tests, pgrep and kill (procps).
bash scripts/install-deps.sh gcc procps
# Tests that need an example or the CLI binary build it themselves.
cargo test --workspace --all-targets
cargo test --workspace --doc
