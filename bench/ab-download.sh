#!/usr/bin/env bash
# A/B of 1 GiB downloads: several arcad builds and nginx (sendfile), interleaved, one warm file
# each. Used to tell a real change apart from this machine's run-to-run spread.
#
#   bench/ab-download.sh RUNS ARCAD [ARCAD...]
#
# Each arcad gets its own temp data dir and the same 1 GiB of random bytes (uploaded once, then
# downloaded once untimed so it is in the page cache); nginx serves a copy of the same bytes.
# Prints one line per round: GB/s for each arcad (a0, a1, ...) and nginx.
set -euo pipefail
(( $# >= 2 )) || { echo "usage: $0 RUNS ARCAD [ARCAD...]" >&2; exit 2; }
RUNS=$1; shift
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer" >&2; exit 2; }
for tool in nginx curl python3; do command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 1; }; done
D=$(mktemp -d "${TMPDIR:-/tmp}/ab-download.XXXXXX"); chmod 755 "$D"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [[ -f $D/ng/pid ]] && nginx -c "$D/ng/nginx.conf" -p "$D/ng" -s stop 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$D"
}
trap cleanup EXIT
NGPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
head -c 1G /dev/urandom >"$D/big"
mkdir -p "$D/www" "$D/ng"
cp "$D/big" "$D/www/big"
cat >"$D/ng/nginx.conf" <<NG
user root; worker_processes auto; pid $D/ng/pid; error_log $D/ng/error.log;
events {}
http { access_log $D/ng/access.log; sendfile on;
       server { listen 127.0.0.1:$NGPORT; root $D/www; } }
NG
nginx -c "$D/ng/nginx.conf" -p "$D/ng"
PORTS=() TOKS=()
k=0
for b in "$@"; do
    "$b" --listen 127.0.0.1:0 --data "$D/d$k" >"$D/arcad$k.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do [[ -s $D/d$k/arcad.port ]] && break; sleep 0.1; done
    PORTS+=("$(cat "$D/d$k/arcad.port")"); TOKS+=("$(cat "$D/d$k/admin.token")")
    url="http://127.0.0.1:${PORTS[$k]}/repos/ab/big/1/big.bin"
    curl -sSf -o /dev/null -H "Authorization: Bearer ${TOKS[$k]}" -T "$D/big" "$url"
    curl -sSf -o /dev/null -H "Authorization: Bearer ${TOKS[$k]}" "$url"
    k=$((k + 1))
done
curl -sSf -o /dev/null "http://127.0.0.1:$NGPORT/big"
sync
gbps() { awk -v v="$1" 'BEGIN{printf "%.2f", v/1e9}'; }
for r in $(seq "$RUNS"); do
    line="round $r:"
    for ((j = 0; j < k; j++)); do
        v=$(curl -sSf -o /dev/null -w '%{speed_download}' -H "Authorization: Bearer ${TOKS[$j]}" \
            "http://127.0.0.1:${PORTS[$j]}/repos/ab/big/1/big.bin")
        line+=" a$j=$(gbps "$v")"
    done
    v=$(curl -sSf -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$NGPORT/big")
    line+=" nginx=$(gbps "$v")"
    echo "$line"
done
