#!/usr/bin/env bash
# The whole test suite: unit, integration, cluster and doc tests.
# Installs what the tests need on a fresh Debian machine first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --workspace --bins --examples
cargo test --workspace --all-targets
cargo test --workspace --doc
