#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages named as arguments, only those that
# are missing. With no arguments it installs nothing. On a system without
# dpkg/apt-get it names the packages it could not check and carries on, so
# that the caller's own commands report anything that is really missing.
set -euo pipefail
[ $# -gt 0 ] || exit 0
if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: no dpkg/apt-get here; make sure these are installed: $*" >&2
  exit 0
fi
need=()
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "install-deps: installing ${need[*]}" >&2
  # Another installer may hold the lock (tests install in parallel): wait.
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}"
fi
