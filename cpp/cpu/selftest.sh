#!/bin/sh
# Builds the CPU kernel self-test (cpp/cpu/selftest/) and runs it twice: built-in GEMM only, then with OpenBLAS when
# it loads at run time (Note [OpenBLAS at run time] in gemm_openblas.cc: one binary, OpenBLAS found by dlopen).
# Kernels are called as a compiled program calls them: the contract check first (cpp/kernel_contract.h).
set -e
here=$(cd "$(dirname "$0")" && pwd)
out=${TMPDIR:-/tmp}/towerline-cpu-selftest
mkdir -p "$out"
srcs="$(ls "$here"/*.cc) $here/../affinity.cc $here/../kernel.cc $here/../kernel_args.cc $here/../kernel_contract.cc \
  $here/../kernel_contracts.cc $(ls "$here"/selftest/*.cc)"
CXX=${CXX:-g++}
FLAGS="-std=c++17 -O3 -fno-math-errno -fno-trapping-math -ffp-contract=off -Wall -Wextra -pthread -I$here/.."  # as CMakeLists.txt
$CXX $FLAGS -o "$out/selftest" $srcs -ldl
echo "== builtin GEMM =="
TOWERLINE_OPENBLAS=0 "$out/selftest" "$@"
if ldconfig -p 2>/dev/null | grep -q 'libopenblas[p]*\.so\.0'; then
  echo "== OpenBLAS (dlopen; the first line names the library) =="
  "$out/selftest" "$@"
else
  echo "== libopenblas.so.0 not in the loader cache; OpenBLAS run skipped =="
fi
