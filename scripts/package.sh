#!/usr/bin/env bash
# Builds a Debian package of memtrace: /usr/bin/memtrace and /usr/lib/memtrace/libmemtrace.so
# (memtrace finds the library at ../lib/memtrace/ from its own directory), with dpkg-deb.
#
#   scripts/package.sh                      # release build -> target/debian/memtrace_<version>_<arch>.deb
#   scripts/package.sh --profile dev --no-build --out DIR  # the dev build as it is (the e2e test)
#
# Install with `sudo dpkg -i target/debian/memtrace_*.deb`, or unpack anywhere with
# `dpkg-deb -x FILE.deb DIR` and run DIR/usr/bin/memtrace. Prints the package's path.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
out=target/debian
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --no-build) build=0; shift ;;
        *) echo "usage: scripts/package.sh [--profile release|dev] [--out DIR] [--no-build]" >&2; exit 2 ;;
    esac
done
command -v dpkg-deb >/dev/null || { echo "scripts/package.sh needs dpkg-deb (apt-get install dpkg)" >&2; exit 1; }

[ "$build" = 1 ] && cargo build --quiet --profile "$profile" --workspace
case "$profile" in dev) dir=target/debug ;; *) dir=target/$profile ;; esac

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$dir/memtrace" "$stage/usr/bin/memtrace"
install -D -m 0644 "$dir/libmemtrace.so" "$stage/usr/lib/memtrace/libmemtrace.so"
install -D -m 0644 README.md "$stage/usr/share/doc/memtrace/README.md"
mkdir -p "$stage/DEBIAN"
size=$(du -sk "$stage/usr" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: memtrace
Version: $version
Architecture: $arch
Maintainer: memtrace developers <memtrace@example.invalid>
Installed-Size: $size
Depends: libc6, libgcc-s1
Section: devel
Priority: optional
Description: memory-leak and memory-consumption profiler
 memtrace runs an unmodified program with libmemtrace.so preloaded, records every
 allocation with its stack, and reports leaks (classified as memcheck does), the
 peak, flame graphs and exports; memtrace check is a CI leak gate.
CONTROL
mkdir -p "$out"
deb="$out/memtrace_${version}_${arch}.deb"
# xz for a release package; a dev build's 80 MB of debug info is packed fast instead.
case "$profile" in dev) z=(-Zgzip -z1) ;; *) z=(-Zxz) ;; esac
dpkg-deb --root-owner-group "${z[@]}" --build "$stage" "$deb" >/dev/null
echo "$deb"
