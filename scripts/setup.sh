#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks (apt + pip), then configures
# and builds pbllm in build/. Idempotent and quiet when everything is there.
#   scripts/setup.sh            # Release build in build/
#   BUILD_DIR=out scripts/setup.sh
#   EXTRA_APT_PACKAGES="clang libomp-dev" CXX=clang++ BUILD_DIR=build-asan CMAKE_ARGS=... scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}

APT_PACKAGES=(cmake g++ make ninja-build ccache pkg-config libcli11-dev libspdlog-dev nlohmann-json3-dev
              libgtest-dev libgmock-dev libbenchmark-dev libpcre2-dev zlib1g-dev python3 python3-pip
              slurm-wlm munge
              ${EXTRA_APT_PACKAGES:-})
missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# A python3 from elsewhere (pyenv, a venv) is as good as Debian's.
if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1; then
  filtered=()
  for package in "${missing[@]}"; do
    [[ "$package" == python3 || "$package" == python3-pip ]] || filtered+=("$package")
  done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi
if ((${#missing[@]})); then
  echo "setup: apt-get install ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# pip packages: only when an import or a pinned version is missing.
if ! python3 - <<'PY' 2>/dev/null
import importlib.metadata as md, re, sys
for line in open("requirements.txt"):
    line = line.split("#")[0].strip()
    if not line: continue
    name, _, version = line.partition("==")
    installed = md.version(name)
    if version and installed.split("+")[0] != version: sys.exit(1)
PY
then
  echo "setup: pip install -r requirements.txt (torch is ~2 minutes and 5.7 GB the first time)"
  PIP_FLAGS=(-q --disable-pip-version-check)
  # Debian's own python3 refuses system-wide installs without this flag.
  python3 -m pip install "${PIP_FLAGS[@]}" -r requirements.txt 2>/dev/null ||
    python3 -m pip install "${PIP_FLAGS[@]}" --break-system-packages -r requirements.txt
fi

GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  cmake -S . -B "$BUILD_DIR" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-} >"$BUILD_DIR.configure.log" 2>&1 ||
    { cat "$BUILD_DIR.configure.log"; exit 1; }
  rm -f "$BUILD_DIR.configure.log"
fi
cmake --build "$BUILD_DIR" -j"$(nproc)" >"$BUILD_DIR.build.log" 2>&1 || { tail -n 60 "$BUILD_DIR.build.log"; exit 1; }
rm -f "$BUILD_DIR.build.log"
