#!/usr/bin/env bash
# Builds keyflow's container image with podman from a keyflow binary:
#   deploy/build-image.sh [--binary PATH] [--tag TAG] [--export DIR]
# --binary  the binary to package [default: target/release/keyflow; build it
#           first with `cargo build --release`]
# --tag     the image name [default: localhost/keyflow:latest]
# --export  also unpack the image's filesystem into DIR (to run it with
#           chroot where containers cannot run)
# The image holds the stripped binary, the shared libraries ldd lists for
# it, a passwd entry for the unprivileged user and writable /tmp and /work.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=target/release/keyflow
tag=localhost/keyflow:latest
export_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --export) export_dir="$2"; shift 2 ;;
    *) echo "build-image: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$binary" ] || { echo "build-image: no binary at $binary (cargo build --release)" >&2; exit 2; }
command -v podman >/dev/null || { echo "build-image: podman is not installed" >&2; exit 2; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/work" "$root/data"
chmod 1777 "$root/tmp"
chmod 0777 "$root/work"
strip -o "$root/usr/local/bin/keyflow" "$binary" 2>/dev/null || cp "$binary" "$root/usr/local/bin/keyflow"
# The dynamic loader and every library the binary links, at their paths.
for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
echo "keyflow:x:65532:65532:keyflow:/work:/nonexistent" > "$root/etc/passwd"
echo "keyflow:x:65532:" > "$root/etc/group"
# Names resolve from /etc/hosts first, then DNS (a pod's resolv.conf).
echo "hosts: files dns" > "$root/etc/nsswitch.conf"
cp Containerfile "$stage/Containerfile"
podman build --quiet -f "$stage/Containerfile" -t "$tag" "$stage" >/dev/null
echo "build-image: built $tag" >&2
if [ -n "$export_dir" ]; then
  mkdir -p "$export_dir"
  name="keyflow-export-$$"
  podman create --name "$name" "$tag" >/dev/null
  trap 'podman rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$stage"' EXIT
  podman export "$name" | tar -x -C "$export_dir"
  echo "build-image: unpacked its filesystem into $export_dir" >&2
fi
