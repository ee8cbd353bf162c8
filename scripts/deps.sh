#!/usr/bin/env bash
# Installs the Debian 12 packages arca needs to build and test, if any are missing.
# Safe to run repeatedly: it only calls apt-get when something is absent.
set -euo pipefail
pkgs=(build-essential cmake pkg-config
      libevent-dev libssl-dev librocksdb-dev libxxhash-dev libhttp-parser-dev
      libjansson-dev libinih-dev libcmocka-dev libcurl4-openssl-dev python3 openssl
      clang libclang-rt-14-dev)  # clang + libFuzzer/sanitizer runtimes: scripts/fuzz.sh
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
