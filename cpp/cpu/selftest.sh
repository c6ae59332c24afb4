#!/bin/sh
# Builds the CPU kernel self-test and runs it twice: built-in GEMM only, then with OpenBLAS when it loads at run time
# (Note [OpenBLAS at run time] in gemm_openblas.cc: one binary, OpenBLAS found by dlopen).
set -e
here=$(cd "$(dirname "$0")" && pwd)
out=${TMPDIR:-/tmp}/towerline-cpu-selftest
mkdir -p "$out"
srcs=$(ls "$here"/*.cc | grep -v selftest | grep -v backend_cpu)
CXX=${CXX:-g++}
FLAGS="-std=c++17 -O3 -Wall -Wextra -pthread"
$CXX $FLAGS -o "$out/selftest" $srcs "$here/../kernel.cc" "$here/../kernel_args.cc" "$here/cpu_kernels_selftest.cc" -ldl
echo "== builtin GEMM =="
TOWERLINE_OPENBLAS=0 "$out/selftest" "$@"
if ldconfig -p 2>/dev/null | grep -q 'libopenblas[p]*\.so\.0'; then
  echo "== OpenBLAS (dlopen; the first line names the library) =="
  "$out/selftest" "$@"
else
  echo "== libopenblas.so.0 not in the loader cache; OpenBLAS run skipped =="
fi
