#!/usr/bin/env bash
# Command 1: install what is missing, build, and start arcad on its embedded defaults
# (127.0.0.1:8080, data in ./arca-data, admin token in ./arca-data/admin.token).
# Extra arguments go to arcad, e.g. scripts/run.sh --listen 127.0.0.1:9000
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target arcad
exec build/server/arcad "$@"
