#!/bin/sh
# Builds and runs the CPU kernel self-test (cpp/cpu/selftest/) twice: built-in GEMM only, then with OpenBLAS (when
# installed). Kernels are called as a compiled program calls them: the contract check first (cpp/kernel_contract.h).
set -e
here=$(cd "$(dirname "$0")" && pwd)
out=${TMPDIR:-/tmp}/towerline-cpu-selftest
mkdir -p "$out"
srcs="$(ls "$here"/*.cc) $here/../kernel.cc $here/../kernel_args.cc $here/../kernel_contract.cc \
  $here/../kernel_contracts.cc $(ls "$here"/selftest/*.cc)"
CXX=${CXX:-g++}
FLAGS="-std=c++17 -O3 -Wall -Wextra -pthread -I$here/.."
echo "== builtin GEMM =="
$CXX $FLAGS -o "$out/selftest_builtin" $srcs
"$out/selftest_builtin" "$@"
blasinc=""
for d in /usr/include/x86_64-linux-gnu/openblas-pthread /usr/include/openblas; do
  [ -f "$d/cblas.h" ] && blasinc="-I$d" && break
done
if [ -n "$blasinc" ]; then
  echo "== OpenBLAS (-DTL_HAVE_OPENBLAS) =="
  $CXX $FLAGS -DTL_HAVE_OPENBLAS $blasinc -o "$out/selftest_openblas" $srcs -lopenblas
  "$out/selftest_openblas" "$@"
else
  echo "== OpenBLAS headers not found; skipped =="
fi
