#!/bin/sh
# Instructions per call of the CPU kernels at the benchmark models' shapes (tools/kernel-counts.cc), counted by
# callgrind: a figure that load from other processes cannot blur, for before/after comparisons of kernel changes.
#
#   tools/kernel-counts.sh [--src CHECKOUT] [--flags "CXXFLAGS"] [--cache | --time] [CASE...]
#
# --src builds the kernels of another checkout (e.g. main) with this harness; --flags replaces the addon's kernel
# flags (CMakeLists.txt) for that build, e.g. --flags -O3 for a checkout from before they changed. --time prints
# rough wall-clock figures instead (untrustworthy on a loaded machine). --cache adds callgrind's cache simulation
# with a 1 MiB last level (a Zen 4 core's L2): its data misses show the memory passes a fusion saves. TOWERLINE_ISA picks the kernel path
# (Note [Kernel ISA] in cpp/cpu/isa.h); callgrind cannot run AVX-512 code.
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
src=$here
flags="-O3 -fno-math-errno -fno-trapping-math -ffp-contract=off"
mode=count
cache=
while [ $# -gt 0 ]; do
  case $1 in
    --src) src=$(cd "$2" && pwd); shift 2 ;;
    --flags) flags=$2; shift 2 ;;
    --time) mode=time; shift ;;
    --cache) cache="--cache-sim=yes --LL=1048576,16,64"; shift ;;
    *) break ;;
  esac
done
out=${TMPDIR:-/tmp}/towerline-kernel-counts-$(echo "$src $flags" | cksum | cut -d' ' -f1)
mkdir -p "$out"
cpp=$src/cpp
srcs="$(ls "$cpp"/cpu/*.cc) $cpp/kernel.cc $cpp/kernel_args.cc $cpp/kernel_contract.cc $cpp/kernel_contracts.cc"
if [ ! -x "$out/kernel-counts" ] || [ -n "$(find "$cpp" "$here/tools/kernel-counts.cc" -newer "$out/kernel-counts" -name '*.[ch]*' | head -1)" ]; then
  echo "building the harness against $src ($flags)" >&2
  ${CXX:-g++} -std=c++17 $flags -pthread -I"$cpp" -o "$out/kernel-counts" $srcs "$here/tools/kernel-counts.cc" -ldl
fi
[ $# -eq 0 ] && set -- $("$out/kernel-counts" list | cut -d' ' -f1)
for c in "$@"; do
  if [ $mode = time ]; then
    TOWERLINE_OPENBLAS=0 "$out/kernel-counts" time "$c"
    continue
  fi
  calls=3
  f=$out/callgrind.$c.out
  if TOWERLINE_OPENBLAS=0 valgrind --tool=callgrind $cache --collect-atstart=no --callgrind-out-file="$f" \
      "$out/kernel-counts" count "$c" $calls >/dev/null 2>"$out/valgrind.log"; then
    # summary: Ir [Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw]
    set -- $(sed -n 's/^summary: *//p; s/^totals: *//p' "$f" | head -1)
    if [ -n "$cache" ]; then
      printf '%-22s %14s instructions/call %10s D1 misses %10s LL (1 MiB) misses\n' "$c" "$(( $1 / calls ))" \
        "$(( ($5 + $6) / calls ))" "$(( ($8 + $9) / calls ))"
    else
      printf '%-22s %14s instructions/call\n' "$c" "$(( ${1:-0} / calls ))"
    fi
  else
    printf '%-22s %14s\n' "$c" "(not in this build)"
  fi
done
