#!/usr/bin/env bash
# The one-call GPU check (issue 17): from the repo root on a GPU machine (after `source .device/setup.sh` where
# Node.js was carried there; docs/gpu.md, "Running the GPU check"):
#
#     bash tools/gpu-check.sh RESULTS_DIR          (or: npm run gpu:check -- RESULTS_DIR)
#
# 1. checks the tools: node/npm, nvcc, cmake/ninja, nvidia-smi, compute-sanitizer, cuBLAS (CUDA toolkit or pip's
#    NVIDIA wheels), PyTorch; on a machine with no GPU it stops there and exits 0;
# 2. builds the addon for this GPU's architecture only and stops unless the build says "CUDA backend ON";
# 3. runs `npm run test:gpu`, then `npm run bench:gpu` (PyTorch beside ours), then compute-sanitizer memcheck on
#    short GPU tests, each under its own time limit: the whole script ends within TOWERLINE_GPU_CHECK_BUDGET_S
#    (default 450 s, under 8 minutes);
# 4. writes into RESULTS_DIR (flat, 7 files): tools.txt, build.log, test-gpu.log, bench-gpu.log, bench-gpu.json,
#    memcheck.log and summary.md (printed last).
# Exit status: 0 when everything ran and passed (or there is no GPU), 1 when a step failed, 2 on bad usage.
#
# Environment (all optional):
#   TOWERLINE_PYTHON        python3 for PyTorch and the NVIDIA wheels (default: the first python3 that can
#                           `import torch`, trying /opt/torch/.venv/bin/python3 first)
#   TOWERLINE_CUBLAS        auto (default: the toolkit's cuBLAS when complete, else the wheel's) | toolkit | wheel
#   TOWERLINE_CUBLAS_WHEEL  a folder with cuBLAS include/ and lib/ (default: SITE/nvidia/cu13, else nvidia/cublas)
#   TOWERLINE_CUBLAS_SHIM=0 compile against the wheel's whole include/ (default: only its cublas*.h; the build
#                           retries that way by itself when the shim build fails)
#   TOWERLINE_CUDA_ARCH     CMAKE_CUDA_ARCHITECTURES (default: the GPUs' compute capability, e.g. 9.0 -> 90)
#   TOWERLINE_GPU_CHECK_BUDGET_S   total seconds for all steps (default 450)
#   TOWERLINE_GPU_CHECK_STEPS      which of test,bench,memcheck to run after the build (default all three; a short
#                                  rerun after a fix: e.g. TOWERLINE_GPU_CHECK_STEPS=test TOWERLINE_GPU_CHECK_BUDGET_S=180)
#   TOWERLINE_GPU_CHECK_FORCE=1    build and run every step even without a GPU (to test this script)
set -uo pipefail

if [ $# -ne 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: bash tools/gpu-check.sh RESULTS_DIR   (from the repo root; see docs/gpu.md)" >&2
  exit 2
fi
mkdir -p "$1" || exit 2
RESULTS=$(cd "$1" && pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$PWD
T0=$SECONDS
BUDGET=${TOWERLINE_GPU_CHECK_BUDGET_S:-450}
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
TOOLS=$RESULTS/tools.txt
SUMMARY=$RESULTS/summary.md
: > "$TOOLS"
FAILED=0
STEPS=",${TOWERLINE_GPU_CHECK_STEPS:-test,bench,memcheck},"
wanted() { [ "${STEPS#*,$1,}" != "$STEPS" ]; }
# The least time each later step is left when an earlier one may run long (0 for a step not wanted).
R_TEST=$(wanted test && echo 90 || echo 0)
R_BENCH=$(wanted bench && echo 60 || echo 0)
R_MEM=$(wanted memcheck && echo 60 || echo 0)

say() { printf '%s\n' "$*" | tee -a "$TOOLS"; }
have() { command -v "$1" >/dev/null 2>&1; }
first_line() { "$@" 2>&1 | head -n 1; }
elapsed() { echo $((SECONDS - T0)); }
# Seconds for the next step: at most $1, leaving $2 for the steps after it, at least 20.
limit() {
  local left=$((BUDGET - (SECONDS - T0) - $2))
  [ "$left" -gt "$1" ] && left=$1
  [ "$left" -lt 20 ] && left=20
  echo "$left"
}
# run_step LOG LIMIT CMD...: runs CMD under `timeout`, output to the terminal and LOG; sets STEP_RC and STEP_S.
run_step() {
  local log=$1 lim=$2 t=$SECONDS
  shift 2
  echo "\$ $* (time limit ${lim} s)" | tee "$log"
  timeout -k 10 "$lim" "$@" 2>&1 | tee -a "$log"
  STEP_RC=${PIPESTATUS[0]}
  STEP_S=$((SECONDS - t))
  if [ "$STEP_RC" -eq 124 ] || [ "$STEP_RC" -eq 137 ]; then echo "TIMED OUT after ${lim} s" | tee -a "$log"; fi
  echo "exit status $STEP_RC after ${STEP_S} s" | tee -a "$log"
}

# ---- summary state, filled in as the steps run ---------------------------------------------------------------
S_DEVICE="no GPU found"; S_DRIVER="-"; S_CUDA="-"; S_NVCC="not found"; S_CUBLAS="not found"; S_WHEELS="-"
S_TORCH="not found"; S_BUILD="not run"; S_LDD="-"; S_TESTS="not run"; S_BENCH="not run"; S_MEMCHECK="not run"
S_STOP=""

write_summary() {
  {
    echo "# towerline GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- device: $S_DEVICE"
    echo "- driver $S_DRIVER, CUDA (driver) $S_CUDA; nvcc $S_NVCC"
    echo "- cuBLAS: $S_CUBLAS"
    echo "- wheels: $S_WHEELS"
    echo "- PyTorch: $S_TORCH"
    echo "- build: $S_BUILD"
    echo "- ldd: $S_LDD"
    echo "- test:gpu: $S_TESTS"
    echo "- memcheck: $S_MEMCHECK"
    echo "- bench:gpu: $S_BENCH"
    [ -n "$S_STOP" ] && echo "- **stopped**: $S_STOP"
    echo
    node "$ROOT/tools/gpu-summary.mjs" "$RESULTS/bench-gpu.json" 2>/dev/null ||
      printf '%s\n' "Targets: MNIST step >= 1.0x PyTorch examples/s: not measured; 4-tower all-reduce >= 60% of D2D copy at 256 MB: not measured"
    echo
    echo "Total $(elapsed) s. Full logs beside this file: $(cd "$RESULTS" && ls | grep -vx summary.md | paste -sd' ' | sed 's/ /, /g')."
  } > "$SUMMARY"
  echo
  echo "==== $SUMMARY"
  cat "$SUMMARY"
}
stop() {  # stop REASON: nothing after this can mean anything
  S_STOP=$1
  echo "gpu-check: STOP: $1" | tee -a "$TOOLS" >&2
  write_summary
  exit 1
}

# ---- 1. tools --------------------------------------------------------------------------------------------------
say "towerline gpu-check in $ROOT, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(uname -sm), $(nproc) cores"
if ! have node || ! have npm; then
  say "node/npm: NOT FOUND (carry Node.js: bash ../shared/tools/device-pack.sh, then source .device/setup.sh)"
  NODE_OK=0
else
  say "node $(node --version), npm $(npm --version)"
  if node -e "require.resolve('tsx/package.json'); require.resolve('cmake-js/package.json')" 2>/dev/null; then NODE_OK=1
  else say "node_modules: tsx or cmake-js missing (carry node_modules: device-pack.sh --node-modules; docs/gpu.md)"; NODE_OK=0
  fi
fi

if ! have nvcc && [ -x "$CUDA_HOME/bin/nvcc" ]; then export PATH="$CUDA_HOME/bin:$PATH"; fi
if have nvcc; then S_NVCC=$(nvcc --version | grep -o 'release [0-9.]*, V[0-9.]*' | sed 's/release //'); say "nvcc: $(command -v nvcc) ($S_NVCC)"
else say "nvcc: not found (nor $CUDA_HOME/bin/nvcc)"; fi

# The python with torch: it also locates pip's NVIDIA wheels (cuBLAS) and runs the PyTorch references.
PY=""
for c in ${TOWERLINE_PYTHON:-} /opt/torch/.venv/bin/python3 "$(command -v python3 2>/dev/null)" /usr/bin/python3; do
  [ -n "$c" ] && [ -x "$c" ] || continue
  if [ -n "${TOWERLINE_PYTHON:-}" ] || timeout 60 "$c" -c 'import torch' 2>/dev/null; then PY=$c; break; fi
done
if [ -z "$PY" ]; then
  for c in /opt/torch/.venv/bin/python3 "$(command -v python3 2>/dev/null)"; do [ -n "$c" ] && [ -x "$c" ] && { PY=$c; break; }; done
  say "python3 with torch: none found (set TOWERLINE_PYTHON); using ${PY:-no python} for the wheels"
else
  say "python3 with torch: $PY"
fi
# pip's cmake and ninja live beside that python when they are not on PATH.
if [ -n "$PY" ]; then
  PYBIN=$(dirname "$PY")
  if { ! have cmake && [ -x "$PYBIN/cmake" ]; } || { ! have ninja && [ -x "$PYBIN/ninja" ]; }; then export PATH="$PATH:$PYBIN"; fi
fi
if have cmake; then say "cmake: $(command -v cmake) ($(first_line cmake --version))"; else say "cmake: not found"; fi
if have ninja; then say "ninja: $(command -v ninja) ($(ninja --version))"; else say "ninja: not found (make will be used)"; fi

GPUS=0
if ! have nvidia-smi && [ -x /usr/local/nvidia/bin/nvidia-smi ]; then export PATH="$PATH:/usr/local/nvidia/bin"; fi
if have nvidia-smi && Q=$(nvidia-smi --query-gpu=index,name,driver_version,compute_cap,memory.total --format=csv,noheader 2>&1); then
  say "nvidia-smi:"; say "$Q"
  GPUS=$(printf '%s\n' "$Q" | grep -c .)
  S_DEVICE="$(printf '%s\n' "$Q" | cut -d, -f2 | sed 's/^ //' | sort | uniq -c | sed 's/^ *//; s/^1 //') (compute capability $(printf '%s\n' "$Q" | cut -d, -f4 | tr -d ' ' | sort -u | paste -sd/), $(printf '%s\n' "$Q" | head -1 | cut -d, -f5 | sed 's/^ //'))"
  S_DRIVER=$(printf '%s\n' "$Q" | head -1 | cut -d, -f3 | tr -d ' ')
  S_CUDA=$(nvidia-smi 2>/dev/null | grep -o 'CUDA Version: *[0-9.]*' | grep -o '[0-9.]*$' || echo '?')
  say "driver $S_DRIVER, CUDA $S_CUDA"
else
  say "nvidia-smi: $(have nvidia-smi && printf '%s' "${Q:-}" | head -1 || echo 'not found'): no GPU visible"
fi

SANITIZER=$(command -v compute-sanitizer 2>/dev/null || { [ -x "$CUDA_HOME/bin/compute-sanitizer" ] && echo "$CUDA_HOME/bin/compute-sanitizer"; } || true)
if [ -n "$SANITIZER" ]; then say "compute-sanitizer: $SANITIZER ($("$SANITIZER" --version 2>&1 | grep -io 'version [0-9.]*' | head -1))"
else say "compute-sanitizer: not found"; fi

# cuBLAS: the toolkit's when complete; else pip's wheel (CUDA 13: SITE/nvidia/cu13, versioned .so names only).
TK_INC=""; TK_LIB=""
[ -f "$CUDA_HOME/include/cublas_v2.h" ] && TK_INC=$CUDA_HOME/include
TK_LIB=$(ls "$CUDA_HOME"/lib64/libcublas.so* "$CUDA_HOME"/targets/*/lib/libcublas.so* 2>/dev/null | head -1)
say "cuBLAS in the toolkit ($CUDA_HOME): headers ${TK_INC:-no}, library ${TK_LIB:-no}"
WHEEL=${TOWERLINE_CUBLAS_WHEEL:-}
if [ -z "$WHEEL" ] && [ -n "$PY" ]; then
  for s in $("$PY" -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null); do
    for w in "$s/nvidia/cu13" "$s/nvidia/cublas"; do
      if [ -f "$w/include/cublas_v2.h" ] && ls "$w"/lib/libcublas.so* >/dev/null 2>&1; then WHEEL=$w; break 2; fi
    done
  done
fi
WHEEL_LIB=""
if [ -n "$WHEEL" ]; then
  WHEEL_LIB=$(ls "$WHEEL"/lib/libcublas.so.1[0-9] "$WHEEL"/lib/libcublas.so 2>/dev/null | head -1)
  say "cuBLAS wheel: $WHEEL (library ${WHEEL_LIB:-none}; lib/: $(cd "$WHEEL/lib" 2>/dev/null && ls | grep -E 'cublas|cudart' | paste -sd' '))"
else
  say "cuBLAS wheel: none found (site-packages/nvidia/cu13 or nvidia/cublas of ${PY:-no python})"
fi
if [ -n "$PY" ]; then
  S_WHEELS=$("$PY" - <<'EOF' 2>/dev/null
from importlib import metadata
names = ['nvidia-cublas', 'nvidia-cublas-cu12', 'nvidia-cuda-runtime', 'nvidia-cuda-runtime-cu12', 'nvidia-nccl-cu13']
found = []
for n in names:
    try:
        found.append(f'{n} {metadata.version(n)}')
    except Exception:
        pass
print(', '.join(found) or 'none')
EOF
  ) || S_WHEELS="?"
  say "wheels: $S_WHEELS"
  S_TORCH=$(timeout 120 "$PY" -c 'import torch; c = torch.cuda.is_available(); print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), torch.cuda.is_available() {c}" + (f", {torch.cuda.get_device_name(0)}" if c else ""))' 2>&1 | tail -1)
  say "PyTorch ($PY): $S_TORCH"
fi

case ${TOWERLINE_CUBLAS:-auto} in
  toolkit) USE=toolkit ;;
  wheel) USE=wheel ;;
  *) if [ -n "$TK_INC" ] && [ -n "$TK_LIB" ]; then USE=toolkit; elif [ -n "$WHEEL_LIB" ]; then USE=wheel; else USE=none; fi ;;
esac
case $USE in
  toolkit) S_CUBLAS="CUDA toolkit ($TK_LIB)" ;;
  wheel) S_CUBLAS="pip wheel $WHEEL_LIB (headers through a shim folder holding only cublas*.h)" ;;
  *) S_CUBLAS="not found" ;;
esac
say "cuBLAS used: $S_CUBLAS"

if [ "$GPUS" -eq 0 ] && [ "${TOWERLINE_GPU_CHECK_FORCE:-0}" != 1 ]; then
  say "no GPU on this machine: nothing to build or run for CUDA (checked the tools above; exit 0)"
  S_BUILD="not run (no GPU)"; S_TESTS="not run (no GPU)"; S_BENCH="not run (no GPU)"; S_MEMCHECK="not run (no GPU)"
  write_summary
  exit 0
fi
[ "$NODE_OK" = 1 ] || stop "Node.js or node_modules missing: see tools.txt"
have nvcc || stop "nvcc not found (PATH, $CUDA_HOME/bin): the CUDA backend cannot be built"
[ "$USE" != none ] || stop "no cuBLAS found (toolkit or pip wheel): set TOWERLINE_CUBLAS_WHEEL to a folder with include/cublas_v2.h and lib/libcublas.so.*"

# ---- 2. build, for this GPU's architecture only -------------------------------------------------------------
ARCH=${TOWERLINE_CUDA_ARCH:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d ' .' | sort -u | paste -sd';')}
ARCH=${ARCH:-90}
# build INCLUDE_DIR: configure and build with these flags (sets STEP_RC, STEP_S). cmake-js compile configures only
# where build/ has no CMakeCache.txt; otherwise it ignores the -D flags and prints no "towerline: CUDA backend" line.
# So always configure afresh (objects built with the same flags are reused on a rerun).
build() {
  local args=("--CDCMAKE_CUDA_ARCHITECTURES=$ARCH")
  [ "$USE" = wheel ] && args+=("--CDTOWERLINE_CUBLAS_ROOT=$WHEEL" "--CDTL_CUBLAS_INCLUDE_DIR=$1" "--CDTL_CUBLAS_LIBRARY=$WHEEL_LIB")
  rm -f build/CMakeCache.txt
  run_step "$2" "$3" npm run build:native -- "${args[@]}"
}
export CUDAARCHS=$ARCH CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
if [ "$USE" = wheel ]; then
  # libcublas.so.N needs libcublasLt.so.N beside it: the addon's RPATH names that folder, this covers the rest.
  export LD_LIBRARY_PATH="$(dirname "$WHEEL_LIB")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # The wheel's include/ also holds cudart's headers; compiling against them while linking the toolkit's static
  # cudart would mix versions, so CMake sees a folder holding only the cuBLAS headers.
  SHIM=${TMPDIR:-/tmp}/towerline-cublas-include
  rm -rf "$SHIM" && mkdir -p "$SHIM" && ln -s "$WHEEL"/include/cublas*.h "$SHIM"/
  if [ "${TOWERLINE_CUBLAS_SHIM:-1}" = 0 ]; then
    S_CUBLAS="pip wheel $WHEEL_LIB (the wheel's whole include/: TOWERLINE_CUBLAS_SHIM=0)"
    build "$WHEEL/include" "$RESULTS/build.log" "$(limit 180 $((R_TEST + R_BENCH + R_MEM)))"
  else
    build "$SHIM" "$RESULTS/build.log" "$(limit 180 $((R_TEST + R_BENCH + R_MEM)))"
    if [ "$STEP_RC" -ne 0 ] && [ "$STEP_RC" -ne 124 ] && [ "$STEP_RC" -ne 137 ]; then
      say "the build with only the wheel's cuBLAS headers failed (exit $STEP_RC): once more with the wheel's whole include/"
      mv "$RESULTS/build.log" "$RESULTS/build-shim.log"
      build "$WHEEL/include" "$RESULTS/build.log" "$(limit 150 $((R_TEST + R_BENCH + R_MEM)))"
      cat "$RESULTS/build-shim.log" "$RESULTS/build.log" > "$RESULTS/build.tmp" && mv "$RESULTS/build.tmp" "$RESULTS/build.log"
      rm -f "$RESULTS/build-shim.log"
      S_CUBLAS="pip wheel $WHEEL_LIB (the wheel's whole include/: the shim build failed, its log opens build.log)"
    fi
  fi
else
  build "" "$RESULTS/build.log" "$(limit 180 $((R_TEST + R_BENCH + R_MEM)))"
fi
STATUS=$(grep -o 'towerline: CUDA backend.*' "$RESULTS/build.log" | tail -1)
S_BUILD="${STATUS:-no CUDA status line} (asked for archs $ARCH; exit $STEP_RC, ${STEP_S} s)"
case $STEP_RC in
  0) ;;
  124|137) stop "the build timed out after ${STEP_S} s: see build.log (a rerun continues where it stopped)" ;;
  *) stop "the build failed (exit $STEP_RC): see build.log" ;;
esac
grep -q 'towerline: CUDA backend ON' "$RESULTS/build.log" ||
  stop "the build did not say 'towerline: CUDA backend ON' (it said: ${STATUS:-nothing}); GPU tests would not touch the GPU. See build.log and tools.txt (nvcc, cuBLAS)"
ADDON=$(ls build/Release/towerline.node 2>/dev/null || find build -name '*.node' 2>/dev/null | head -1)
[ -n "$ADDON" ] || stop "no built addon (*.node) under build/"
LDD=$(ldd "$ADDON" 2>&1 | grep -E 'cublas|cudart|not found')
{ echo "\$ ldd $ADDON | grep -E 'cublas|cudart|not found'"; echo "$LDD"; } | tee -a "$RESULTS/build.log"
S_LDD=$(printf '%s\n' "$LDD" | sed 's/ (0x[0-9a-f]*)//; s/^[[:space:]]*//' | paste -sd';' | sed 's/;/; /g')
printf '%s\n' "$LDD" | grep -q 'not found' && stop "the addon has unresolved libraries: $S_LDD"
printf '%s\n' "$LDD" | grep -q 'libcublas' || stop "the addon does not link cuBLAS (ldd shows no libcublas): a CPU-only build"
BIN=$(node -p "require('./package.json').bin.towerline" 2>/dev/null)
if [ -n "$BIN" ]; then
  say "\$ node $BIN topo   (the GPUs as the addon sees them)"
  timeout 60 node "$BIN" topo 2>&1 | tee -a "$TOOLS"
fi

# ---- 3. the GPU suite, the benchmarks, then memcheck (last: it is the slowest per unit of work) --------------
if wanted test; then
  run_step "$RESULTS/test-gpu.log" "$(limit 240 $((R_BENCH + R_MEM)))" npm run test:gpu
  COUNTS=$(grep -E '^(# |ℹ )(tests|pass|fail|cancelled|skipped|todo) [0-9]+' "$RESULTS/test-gpu.log" | sed 's/^[#ℹ] //' | paste -sd',' | sed 's/,/, /g')
  S_TESTS="${COUNTS:-no counts} (exit $STEP_RC, ${STEP_S} s)"
  [ "$STEP_RC" -eq 0 ] || FAILED=1
fi

if wanted bench; then
  rm -f bench/results/latest.json
  TOWERLINE_PYTHON=${PY:-python3} run_step "$RESULTS/bench-gpu.log" "$(limit 150 $R_MEM)" npm run bench:gpu
  cp bench/results/latest.json "$RESULTS/bench-gpu.json" 2>/dev/null
  NFAIL=$(grep -c 'FAILED' "$RESULTS/bench-gpu.log")
  S_BENCH="exit $STEP_RC, ${STEP_S} s$([ "$NFAIL" -gt 0 ] && echo ", $NFAIL FAILED line(s): see bench-gpu.log")"
  [ "$STEP_RC" -eq 0 ] || FAILED=1
fi

if ! wanted memcheck; then :
elif [ -n "$SANITIZER" ]; then
  # Two short GPU runs, straight under node (no test-runner child processes): the native all-reduce among 4 towers
  # on GPU 0 (transports, add kernel reading another tower's memory), then the whole kernel suite.
  ML=$RESULTS/memcheck.log
  run_step "$ML.1" "$(limit 60 45)" env TOWERLINE_TEST_DEVICE=cuda:0 "$SANITIZER" --tool memcheck --target-processes all \
    node --import tsx --test-name-pattern 'native all-reduce' test/gpu-towers.test.ts
  RC1=$STEP_RC S1=$STEP_S
  run_step "$ML.2" "$(limit 150 0)" env TOWERLINE_TEST_DEVICE=cuda:0 "$SANITIZER" --tool memcheck --target-processes all \
    node --import tsx test/kernels.test.ts
  cat "$ML.1" "$ML.2" > "$ML" && rm -f "$ML.1" "$ML.2"
  VERDICT=$(grep -o 'ERROR SUMMARY: [0-9]* errors\?' "$ML" | paste -sd';' | sed 's/;/; /g')
  MCOUNTS=$(grep -E '^(# |ℹ )(pass|fail) [0-9]+' "$ML" | sed 's/^[#ℹ] //' | paste -sd',' | sed 's/,/, /g')
  NCLEAN=$(grep -c 'ERROR SUMMARY: 0 errors' "$ML")
  NERR=$(grep 'ERROR SUMMARY:' "$ML" | grep -vc 'ERROR SUMMARY: 0 errors')
  if grep -q 'Device not supported' "$ML"; then WORD="not supported here (compute-sanitizer: Device not supported)"
  elif [ "$NERR" -gt 0 ]; then WORD="ERRORS FOUND"
  elif [ "$RC1" -ne 0 ] || [ "$STEP_RC" -ne 0 ] || [ "$NCLEAN" -ne 2 ]; then WORD="incomplete (a run failed or timed out)"
  else WORD="clean"; fi
  [ "$WORD" = clean ] || FAILED=1
  S_MEMCHECK="$WORD: ${VERDICT:-no ERROR SUMMARY line} (native all-reduce run: exit $RC1, ${S1} s; kernel suite: exit $STEP_RC, ${STEP_S} s; tests: ${MCOUNTS:-none counted})"
else
  S_MEMCHECK="not run: compute-sanitizer not found"
  FAILED=1
fi

write_summary
exit "$FAILED"
