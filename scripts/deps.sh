#!/usr/bin/env bash
# The Debian packages the test suite uses, installed when missing: by apt-get when run as
# root, otherwise named with the command that installs them (and the script fails).
#   - gcc, g++, make: the fixture programs (tests/fixtures); binutils: strip, addr2line;
#   - llvm-14-linker-tools: the LLVM plugin GNU ar loads (real_programs::tools::ar_with_the_llvm_plugin);
#   - valgrind: memcheck is the oracle of the leak-kind and heap-total tests;
#   - libjemalloc-dev: the jemalloc fixture links its static library;
#   - python3-protobuf, protobuf-compiler: the export tests read pprof profiles back;
#   - python3-venv: the virtual environment of the PyPI tools below;
#   - chromium: the HTML report's tests open the page headless;
#   - heaptrack: heaptrack_print is the oracle of `memtrace report --histogram` and
#     `--by function` (tests/e2e/questions.rs);
#   - python3 perl tcl sqlite3 git bash ripgrep redis-server redis-tools libjemalloc2
#     libtcmalloc-minimal4: the real-programs suite runs Debian's own programs and
#     links against Debian's jemalloc and tcmalloc.
# Then, from PyPI, into a virtual environment of the project's own (target/pytools, no root
# needed): valgrindci, a consumer of memcheck's XML that reads `memtrace check --xml`.
set -euo pipefail
cd "$(dirname "$0")/.."

pytools() {
  [ -x target/pytools/bin/valgrind-ci ] && return 0
  echo "installing valgrindci from PyPI into target/pytools" >&2
  mkdir -p target
  python3 -m venv target/pytools
  target/pytools/bin/pip install --quiet --disable-pip-version-check valgrindci==0.3.0
}

pkgs="gcc g++ make binutils llvm-14-linker-tools valgrind libjemalloc-dev python3-protobuf protobuf-compiler chromium
  heaptrack python3 python3-venv perl tcl sqlite3 git bash ripgrep redis-server redis-tools libjemalloc2
  libtcmalloc-minimal4"
need=()
for pkg in $pkgs; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then pytools; exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "the tests need these Debian packages: ${need[*]}" >&2
  echo "install them with: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
echo "installing ${need[*]} (apt-get, a few minutes)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
pytools
