#!/usr/bin/env bash
# arca vs nginx on loopback: 1 GiB upload, 1 GiB download (plain and over TLS with the same
# certificate), 4 KiB GET, 4 KiB PUT, and arcad's peak RSS. One script, one run; see
# bench/README.md.
#
# Env knobs:
#   ARCAD              arcad binary (default: build/server/arcad beside this repo)
#   BENCH_SIZE_MB      size of the big file in MiB (default 1024)
#   BENCH_DURATION     seconds per wrk run (default 10)
#   BENCH_RUNS         curl runs per server for upload/download; median reported (default 3)
#   BENCH_SERVERS      "nginx arca" (default: both if $ARCAD is executable, else nginx only)
#   BENCH_WRK_THREADS  wrk -t (default 2)      BENCH_WRK_CONNS  wrk -c (default 32)
#   NGINX_WORKERS      nginx worker_processes (default auto = one per core)
#   BENCH_ACCESS_LOG   on|off: per-request access log in both servers (default on, as both
#                      ship; off writes an arcad config with server.access_log = false)
#   NGINX_EXTRA        extra directives for nginx's http{} block, e.g. "client_body_buffer_size 1m;"
#   BENCH_TLS          1|0: also download the big file over HTTPS from both servers, with one
#                      certificate and key (EC P-256, made here) for both (default 1)
#   ARCAD_ARGS         extra arguments for arcad (word-split), e.g. "--log-level warn"
#   BENCH_TMPDIR       where the temp dir goes (default $TMPDIR or /tmp); the big file,
#                      nginx's root and body temp dir, and arca's data dir all live there
#   BENCH_RESULTS      if set, a TSV of the table is written to this file
#   BENCH_KEEP=1       keep the temp dir (logs, data) instead of deleting it
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

SIZE_MB=${BENCH_SIZE_MB:-1024}
DUR=${BENCH_DURATION:-10}
RUNS=${BENCH_RUNS:-3}
ARCAD=${ARCAD:-$ROOT/build/server/arcad}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
WRK_CONNS=${BENCH_WRK_CONNS:-32}
NGINX_WORKERS=${NGINX_WORKERS:-auto}
ACCESS_LOG=${BENCH_ACCESS_LOG:-on}
[[ $ACCESS_LOG == on || $ACCESS_LOG == off ]] || die "BENCH_ACCESS_LOG must be on or off"
TLS=${BENCH_TLS:-1}
[[ $TLS == 1 || $TLS == 0 ]] || die "BENCH_TLS must be 1 or 0"
KEEP=${BENCH_KEEP:-0}
CURL_MAX_TIME=${BENCH_CURL_MAX_TIME:-600}   # per curl transfer, seconds
START_WAIT=${BENCH_START_WAIT:-30}          # server start-up limit, seconds
STOP_WAIT=${BENCH_STOP_WAIT:-40}            # server shutdown limit before SIGKILL, seconds


for v in SIZE_MB DUR RUNS WRK_THREADS WRK_CONNS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
(( DUR <= 600 )) || die "BENCH_DURATION over 600 s"
(( RUNS <= 15 )) || die "BENCH_RUNS over 15"
for tool in nginx wrk curl python3 awk dd openssl; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done

case "$ARCAD" in /*) ;; *) ARCAD="$PWD/$ARCAD" ;; esac
if [[ -z ${BENCH_SERVERS:-} ]]; then
    if [[ -x $ARCAD ]]; then
        BENCH_SERVERS="nginx arca"
    else
        log "arcad not found at $ARCAD (set ARCAD=...): measuring nginx only"
        BENCH_SERVERS="nginx"
    fi
fi
HAVE_NGINX=0; HAVE_ARCA=0
for s in $BENCH_SERVERS; do
    case $s in
        nginx) HAVE_NGINX=1 ;;
        arca) HAVE_ARCA=1; [[ -x $ARCAD ]] || die "arcad not executable: $ARCAD" ;;
        *) die "unknown server in BENCH_SERVERS: $s" ;;
    esac
done
SERVERS=()
(( HAVE_NGINX )) && SERVERS+=(nginx)
(( HAVE_ARCA )) && SERVERS+=(arca)
(( ${#SERVERS[@]} )) || die "BENCH_SERVERS is empty"

# ---------------------------------------------------------------- temp dir + cleanup
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/arca-bench.XXXXXX")
NGINX_PID=""
ARCA_PID=""

stop_pid() {  # stop_pid PID NAME SIGNAL: signal, wait (bounded), then SIGKILL
    local pid=$1 name=$2 sig=$3 i
    [[ -n $pid ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_WAIT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) did not stop within ${STOP_WAIT}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$ARCA_PID" arcad TERM
    stop_pid "$NGINX_PID" nginx TERM  # nginx master: TERM = fast shutdown, takes its workers
    if [[ $KEEP == 1 ]]; then
        log "kept $T"
    else
        rm -rf "$T"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# http_code URL [curl args...]: prints the status code (000 on connection failure)
http_code() {
    local url=$1; shift
    curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$@" "$url" || true
}

median() {  # median of the arguments (numbers); "FAIL" if any is FAIL or none given
    local x
    for x in "$@"; do [[ $x == FAIL ]] && { echo FAIL; return; }; done
    (( $# )) || { echo FAIL; return; }
    printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else printf "%.6g\n", (a[NR/2]+a[NR/2+1])/2 }'
}

declare -A R     # R[metric,server] = value
declare -A TLS_SUITE  # TLS_SUITE[server] = negotiated protocol / cipher suite
declare -A NOTE  # NOTE[metric,server] = extra detail
NOTES=()         # free-form lines printed after the table

auth_args() {  # curl args carrying the server's credentials
    if [[ $1 == arca ]]; then printf '%s\n' -H "Authorization: Bearer $ARCA_TOKEN"; fi
}

base_url() { if [[ $1 == arca ]]; then echo "http://127.0.0.1:$ARCA_PORT"; else echo "http://127.0.0.1:$NGINX_PORT"; fi; }
tls_url() { if [[ $1 == arca ]]; then echo "https://127.0.0.1:$ARCA_TLS_PORT"; else echo "https://127.0.0.1:$NGINX_TLS_PORT"; fi; }

# ---------------------------------------------------------------- files
BIG_BYTES=$((SIZE_MB * 1024 * 1024))
mkdir -p "$T/files"
log "temp dir $T"
log "generating ${SIZE_MB} MiB from /dev/urandom"
dd if=/dev/urandom of="$T/files/big.bin" bs=1M count="$SIZE_MB" iflag=fullblock status=none
dd if=/dev/urandom of="$T/files/4k.bin" bs=4096 count=1 status=none
[[ $(stat -c %s "$T/files/big.bin") == "$BIG_BYTES" ]] || die "big file has the wrong size"

# One self-signed certificate and key for both servers' HTTPS listeners (the TLS download).
if [[ $TLS == 1 ]]; then
    mkdir -p "$T/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$T/tls/key.pem" -out "$T/tls/cert.pem" -subj "/CN=localhost" \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" >/dev/null 2>&1 \
        || die "openssl could not make the TLS certificate"
fi

# ---------------------------------------------------------------- nginx
start_nginx() {
    local ng=$T/nginx user_line=""
    mkdir -p "$ng/www/big" "$ng/www/small" "$ng/www/up" "$ng/www/put4k" \
        "$ng/tmp/body" "$ng/tmp/proxy" "$ng/tmp/fastcgi" "$ng/tmp/uwsgi" "$ng/tmp/scgi" "$ng/logs"
    # Same bytes, same inodes as the files the clients upload to arca.
    ln "$T/files/big.bin" "$ng/www/big/big.bin"
    ln "$T/files/4k.bin" "$ng/www/small/4k.bin"
    NGINX_PORT=$(free_port)
    # As root, nginx's workers would switch to "nobody" and could not write into our 0700 temp
    # dir; keep them as the invoking user instead.
    if (( EUID == 0 )); then user_line="user $(id -un) $(id -gn);"; fi
    local access="access_log $ng/logs/access.log;"
    [[ $ACCESS_LOG == off ]] && access="access_log off;"
    # HTTPS: stock nginx TLS settings (no kTLS: nginx reads the file and encrypts in user space,
    # as arcad does), TLS 1.2 and 1.3 as arcad allows.
    local tls_server=""
    if [[ $TLS == 1 ]]; then
        NGINX_TLS_PORT=$(free_port)
        tls_server="server {
        listen 127.0.0.1:$NGINX_TLS_PORT ssl;
        server_name localhost;
        ssl_certificate $T/tls/cert.pem;
        ssl_certificate_key $T/tls/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $ng/www;
    }"
    fi
    cat >"$ng/nginx.conf" <<EOF
$user_line
daemon off;
master_process on;
worker_processes $NGINX_WORKERS;
pid $ng/nginx.pid;
error_log $ng/logs/error.log warn;
events { worker_connections 4096; }
http {
    default_type application/octet-stream;
    $access
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 100000000;
    client_body_temp_path $ng/tmp/body;
    proxy_temp_path $ng/tmp/proxy;
    fastcgi_temp_path $ng/tmp/fastcgi;
    uwsgi_temp_path $ng/tmp/uwsgi;
    scgi_temp_path $ng/tmp/scgi;
    ${NGINX_EXTRA:-}
    $tls_server
    server {
        listen 127.0.0.1:$NGINX_PORT;
        server_name localhost;
        root $ng/www;
        location / {
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw;
            client_max_body_size 0;
        }
    }
}
EOF
    nginx -t -q -p "$ng" -c "$ng/nginx.conf" -e "$ng/logs/error.log" \
        || { cat "$ng/logs/error.log" >&2; die "nginx config test failed"; }
    nginx -p "$ng" -c "$ng/nginx.conf" -e "$ng/logs/error.log" >"$ng/logs/stdout.log" 2>&1 &
    NGINX_PID=$!
    local i
    for ((i = 0; i < START_WAIT * 10; i++)); do
        kill -0 "$NGINX_PID" 2>/dev/null || { cat "$ng/logs/error.log" >&2; die "nginx exited at start"; }
        [[ $(http_code "http://127.0.0.1:$NGINX_PORT/small/4k.bin") == 200 ]] && break
        sleep 0.1
    done
    [[ $(http_code "http://127.0.0.1:$NGINX_PORT/small/4k.bin") == 200 ]] || die "nginx did not come up"
    log "nginx $(nginx -v 2>&1 | sed 's/.*\///') pid $NGINX_PID on 127.0.0.1:$NGINX_PORT"
}

# ---------------------------------------------------------------- arca
start_arca() {
    local ad=$T/arca-data i
    mkdir -p "$ad"
    local args=(--listen 127.0.0.1:0 --data "$ad")
    : >"$T/arcad.conf"
    if [[ $ACCESS_LOG == off ]]; then
        printf '[server]\naccess_log = false\n' >>"$T/arcad.conf"
    fi
    if [[ $TLS == 1 ]]; then
        printf '[tls]\nlisten = 127.0.0.1:0\ncert_file = %s\nkey_file = %s\n' \
            "$T/tls/cert.pem" "$T/tls/key.pem" >>"$T/arcad.conf"
    fi
    [[ -s $T/arcad.conf ]] && args+=(--config "$T/arcad.conf")
    # shellcheck disable=SC2206
    args+=(${ARCAD_ARGS:-})
    "$ARCAD" "${args[@]}" >"$T/arcad.log" 2>&1 &
    ARCA_PID=$!
    for ((i = 0; i < START_WAIT * 10; i++)); do
        kill -0 "$ARCA_PID" 2>/dev/null || { tail -n 30 "$T/arcad.log" >&2; die "arcad exited at start"; }
        if [[ -s $ad/arcad.port && -s $ad/admin.token ]]; then
            ARCA_PORT=$(tr -dc 0-9 <"$ad/arcad.port")
            [[ -n $ARCA_PORT && $(http_code "http://127.0.0.1:$ARCA_PORT/healthz") == 200 ]] && break
        fi
        sleep 0.1
    done
    [[ -n ${ARCA_PORT:-} && $(http_code "http://127.0.0.1:$ARCA_PORT/healthz") == 200 ]] \
        || { tail -n 30 "$T/arcad.log" >&2; die "arcad did not come up within ${START_WAIT}s"; }
    ARCA_TOKEN=$(tr -d ' \r\n' <"$ad/admin.token")
    if [[ $TLS == 1 ]]; then
        [[ -s $ad/arcad.tls.port ]] || die "arcad wrote no arcad.tls.port"
        ARCA_TLS_PORT=$(tr -dc 0-9 <"$ad/arcad.tls.port")
    fi
    log "arcad $("$ARCAD" --version 2>&1 | head -n1) pid $ARCA_PID on 127.0.0.1:$ARCA_PORT"
    # The 4 KiB file for the GET test.
    local code
    code=$(curl -sS --max-time 30 -o "$T/put-small.json" -w '%{http_code}' \
        -H "Authorization: Bearer $ARCA_TOKEN" -T "$T/files/4k.bin" \
        "http://127.0.0.1:$ARCA_PORT/repos/bench/small/1/4k.bin" || true)
    [[ $code == 201 || $code == 200 ]] || { cat "$T/put-small.json" >&2; die "arca: PUT of the 4 KiB file got $code"; }
}

(( HAVE_NGINX )) && start_nginx
(( HAVE_ARCA )) && start_arca

RUN_ID="r$(date +%s)-$$"
small_path() { if [[ $1 == arca ]]; then echo /repos/bench/small/1/4k.bin; else echo /small/4k.bin; fi; }

# Sanity: both serve the same 4 KiB.
for s in "${SERVERS[@]}"; do
    mapfile -t A < <(auth_args "$s")
    curl -sS --max-time 10 -o "$T/check-$s.bin" "${A[@]}" "$(base_url "$s")$(small_path "$s")"
    cmp -s "$T/check-$s.bin" "$T/files/4k.bin" || die "$s: GET of the 4 KiB file returned other bytes"
done

# ---------------------------------------------------------------- 1 GiB upload
# Each run first stamps the first bytes of the file with the run number (in place, so the file
# stays in the page cache): every upload is new content, and a content-addressed store cannot
# skip work by deduplicating against the previous run. `sync` before each timed run, so one run's
# dirty pages are not written back during the next.
cat "$T/files/big.bin" >/dev/null   # warm the page cache for the source
declare -A ARCA_BIG_PATH
up_once() {  # up_once SERVER RUN -> sets RES to GB/s or FAIL (no subshell: it records NOTES)
    local s=$1 i=$2 url out code t n
    if [[ $s == arca ]]; then
        ARCA_BIG_PATH[$i]="/repos/bench/big/$RUN_ID-$i/big.bin"
        url="$(base_url arca)${ARCA_BIG_PATH[$i]}"
    else
        url="$(base_url nginx)/up/$RUN_ID-$i/big.bin"
    fi
    mapfile -t A < <(auth_args "$s")
    out=$(curl -sS --max-time "$CURL_MAX_TIME" -o "$T/up-$s-$i.body" \
        -w '%{http_code} %{time_total} %{size_upload}' "${A[@]}" -T "$T/files/big.bin" "$url" \
        2>"$T/up-$s-$i.err") || true
    read -r code t n <<<"$out"
    if [[ ${code:-000} != 2* || ${n:-0} != "$BIG_BYTES" ]]; then
        NOTES+=("upload $s run $i: HTTP ${code:-000}, ${n:-0} bytes sent: $(head -c 300 "$T/up-$s-$i.err" "$T/up-$s-$i.body" 2>/dev/null | tr '\n' ' ')")
        RES=FAIL; return
    fi
    RES=$(awk -v b="$BIG_BYTES" -v t="$t" 'BEGIN{printf "%.4f\n", b/t/1e9}')
}
now_s() { date +%s.%N; }
# nginx's upload made durable the way arca's is before its 201: curl's time plus an fdatasync of
# the stored file (`sync -d`), timed right after curl returns.
nginx_durable() {  # nginx_durable RUN CURL_GBPS -> sets RES to GB/s or FAIL
    local f="$T/nginx/www/up/$RUN_ID-$1/big.bin" t0 t1
    [[ $2 != FAIL && -f $f ]] || { RES=FAIL; return; }
    t0=$(now_s); sync -d "$f"; t1=$(now_s)
    RES=$(awk -v b="$BIG_BYTES" -v g="$2" -v s="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" \
        'BEGIN{printf "%.4f\n", b/(b/g/1e9 + s)/1e9}')
}
# The disk's durable write speed, the ceiling of any upload that is on disk before it is
# acknowledged: the same file written with O_DIRECT and one fdatasync at the end.
dd_ceiling() {  # sets RES to GB/s or FAIL
    local out t
    out=$(LC_ALL=C dd if="$T/files/big.bin" of="$T/dd-ceiling.bin" bs=1M oflag=direct \
        conv=fdatasync 2>&1) || { RES=FAIL; rm -f "$T/dd-ceiling.bin"; return; }
    rm -f "$T/dd-ceiling.bin"
    t=$(awk '/bytes/ && / s, /{for (k = 1; k <= NF; k++) if ($k == "s,") print $(k-1)}' <<<"$out")
    [[ -n $t ]] || { RES=FAIL; return; }
    RES=$(awk -v b="$BIG_BYTES" -v t="$t" 'BEGIN{printf "%.4f\n", b/t/1e9}')
}
declare -A UP
UPD="" DDC=""
for ((i = 1; i <= RUNS; i++)); do
    printf 'arca-bench %s run %d\n' "$RUN_ID" "$i" | dd of="$T/files/big.bin" conv=notrunc status=none
    for s in "${SERVERS[@]}"; do
        sync
        up_once "$s" "$i"; v=$RES
        UP[$s]="${UP[$s]:-} $v"
        log "upload   $s run $i: $v GB/s"
        if [[ $s == nginx ]]; then
            nginx_durable "$i" "$v"; UPD+=" $RES"
            log "upload   nginx + fdatasync run $i: $RES GB/s"
            sync; rm -f "$T/nginx/www/up/$RUN_ID-$i/big.bin"
        fi
    done
    sync
    dd_ceiling; DDC+=" $RES"
    log "disk ceiling (dd oflag=direct conv=fdatasync) run $i: $RES GB/s"
done
for s in "${SERVERS[@]}"; do
    # shellcheck disable=SC2086
    R[upload,$s]=$(median ${UP[$s]})
    NOTE[upload,$s]="runs:${UP[$s]}"
done
R[upload,arca]=${R[upload,arca]:-}
if (( HAVE_NGINX )); then
    # shellcheck disable=SC2086
    R[updurable,nginx]=$(median $UPD)
    R[updurable,arca]=${R[upload,arca]}
    NOTE[updurable,nginx]="runs:$UPD"
fi
# shellcheck disable=SC2086
R[ceiling,nginx]=$(median $DDC)
R[ceiling,arca]=${R[upload,arca]}
NOTE[ceiling,dd]="runs:$DDC"

# ---------------------------------------------------------------- 1 GiB download
# nginx serves the big file (same inode as the upload source); arca serves the blob of its first
# successful upload. One untimed download each first, so both are read from a warm page cache.
ARCA_DL=""
if (( HAVE_ARCA )); then
    for ((i = 1; i <= RUNS; i++)); do
        [[ $(awk -v r="${UP[arca]}" -v i="$i" 'BEGIN{split(r,a," "); print a[i]}') != FAIL ]] \
            && { ARCA_DL=${ARCA_BIG_PATH[$i]}; break; }
    done
fi
down_once() {  # down_once SERVER -> sets RES to GB/s or FAIL
    local s=$1 url out code t n
    if [[ $s == arca ]]; then
        [[ -n $ARCA_DL ]] || { RES=FAIL; return; }
        url="$(base_url arca)$ARCA_DL"
    else
        url="$(base_url nginx)/big/big.bin"
    fi
    mapfile -t A < <(auth_args "$s")
    out=$(curl -sS --max-time "$CURL_MAX_TIME" -o /dev/null \
        -w '%{http_code} %{time_total} %{size_download}' "${A[@]}" "$url" 2>"$T/down-$s.err") || true
    read -r code t n <<<"$out"
    if [[ ${code:-000} != 200 || ${n:-0} != "$BIG_BYTES" ]]; then
        NOTES+=("download $s: HTTP ${code:-000}, ${n:-0} of $BIG_BYTES bytes: $(head -c 300 "$T/down-$s.err" | tr '\n' ' ')")
        RES=FAIL; return
    fi
    RES=$(awk -v b="$BIG_BYTES" -v t="$t" 'BEGIN{printf "%.4f\n", b/t/1e9}')
}
declare -A DOWN
for s in "${SERVERS[@]}"; do down_once "$s"; done   # warm-up (a failure here is noted too)
for ((i = 1; i <= RUNS; i++)); do
    for s in "${SERVERS[@]}"; do
        down_once "$s"; v=$RES
        DOWN[$s]="${DOWN[$s]:-} $v"
        log "download $s run $i: $v GB/s"
    done
done
for s in "${SERVERS[@]}"; do
    # shellcheck disable=SC2086
    R[download,$s]=$(median ${DOWN[$s]})
    NOTE[download,$s]="runs:${DOWN[$s]}"
done

# ---------------------------------------------------------------- 1 GiB download over TLS
# The same file each server served above, over HTTPS with the same certificate and key; curl
# trusts that certificate (--cacert) and negotiates with each server as a client would (TLS 1.3,
# the suite both pick is printed). No sendfile on either side: both read, encrypt and write,
# and curl decrypts on the same two cores.
down_tls_once() {  # down_tls_once SERVER -> sets RES to GB/s or FAIL
    local s=$1 url out code t n
    if [[ $s == arca ]]; then
        [[ -n $ARCA_DL ]] || { RES=FAIL; return; }
        url="$(tls_url arca)$ARCA_DL"
    else
        url="$(tls_url nginx)/big/big.bin"
    fi
    mapfile -t A < <(auth_args "$s")
    out=$(curl -sS --max-time "$CURL_MAX_TIME" --cacert "$T/tls/cert.pem" -o /dev/null \
        -w '%{http_code} %{time_total} %{size_download}' "${A[@]}" "$url" \
        2>"$T/down-tls-$s.err") || true
    read -r code t n <<<"$out"
    if [[ ${code:-000} != 200 || ${n:-0} != "$BIG_BYTES" ]]; then
        NOTES+=("TLS download $s: HTTP ${code:-000}, ${n:-0} of $BIG_BYTES bytes: $(head -c 300 "$T/down-tls-$s.err" | tr '\n' ' ')")
        RES=FAIL; return
    fi
    RES=$(awk -v b="$BIG_BYTES" -v t="$t" 'BEGIN{printf "%.4f\n", b/t/1e9}')
}
if [[ $TLS == 1 ]]; then
    declare -A TDOWN
    for s in "${SERVERS[@]}"; do
        # What was negotiated (from a small request's handshake), for the notes.
        sp=$(small_path "$s")
        mapfile -t A < <(auth_args "$s")
        suite=$(curl -sv --max-time 10 --cacert "$T/tls/cert.pem" -o /dev/null "${A[@]}" \
            "$(tls_url "$s")$sp" 2>&1 | sed -n 's/.*SSL connection using \(.*\)$/\1/p' | head -n1)
        TLS_SUITE[$s]=${suite:-unknown}
        down_tls_once "$s"   # warm-up
    done
    for ((i = 1; i <= RUNS; i++)); do
        for s in "${SERVERS[@]}"; do
            down_tls_once "$s"; v=$RES
            TDOWN[$s]="${TDOWN[$s]:-} $v"
            log "TLS download $s run $i: $v GB/s"
        done
    done
    for s in "${SERVERS[@]}"; do
        # shellcheck disable=SC2086
        R[tlsdown,$s]=$(median ${TDOWN[$s]})
        NOTE[tlsdown,$s]="runs:${TDOWN[$s]}; ${TLS_SUITE[$s]}"
    done
fi

# ---------------------------------------------------------------- wrk: 4 KiB GET and PUT
# run_wrk METRIC SERVER SCRIPT URL [script args...] -> sets R[METRIC,SERVER] to 2xx responses/s
run_wrk() {
    local metric=$1 s=$2 script=$3 url=$4; shift 4
    local out=$T/wrk-$metric-$s.txt tok="" line ok bad fb dus
    [[ $s == arca ]] && tok=$ARCA_TOKEN
    BENCH_TOKEN=$tok timeout -k 5 $((DUR + 60)) \
        wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${DUR}s" --timeout 5s -s "$HERE/$script" "$url" \
        ${1:+--} "$@" >"$out" 2>&1 || true
    line=$(grep '^BENCH_RESULT' "$out" | tail -n1 || true)
    if [[ -z $line ]]; then
        R[$metric,$s]=FAIL
        NOTES+=("$metric $s: wrk produced no result: $(tail -n 5 "$out" | tr '\n' ' ')")
        return
    fi
    ok=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$line")
    bad=$(sed -n 's/.* non2xx=\([0-9]*\).*/\1/p' <<<"$line")
    fb=$(sed -n 's/.* first_bad_status=\([0-9]*\).*/\1/p' <<<"$line")
    dus=$(sed -n 's/.* duration_us=\([0-9]*\).*/\1/p' <<<"$line")
    R[$metric,$s]=$(awk -v o="$ok" -v d="$dus" 'BEGIN{printf "%.0f\n", o/(d/1e6)}')
    local se
    se=$(sed -n 's/.*\(sock_connect=[0-9]* sock_read=[0-9]* sock_write=[0-9]* sock_timeout=[0-9]*\).*/\1/p' <<<"$line")
    NOTE[$metric,$s]="2xx=$ok non2xx=$bad $se $(sed -n 's/.*\(p50_us=[0-9]* p99_us=[0-9]*\).*/\1/p' <<<"$line")"
    if (( bad > 0 )); then
        NOTES+=("$metric $s: $bad non-2xx responses (first: HTTP $fb) -- not counted in req/s")
    fi
    if [[ $se != "sock_connect=0 sock_read=0 sock_write=0 sock_timeout=0" ]]; then
        NOTES+=("$metric $s: wrk socket errors: $se")
    fi
    log "$metric $s: ${R[$metric,$s]} req/s (${NOTE[$metric,$s]})"
}

for s in "${SERVERS[@]}"; do
    run_wrk get4k "$s" wrk-get.lua "$(base_url "$s")$(small_path "$s")"
done
for s in "${SERVERS[@]}"; do
    if [[ $s == arca ]]; then
        run_wrk put4k arca wrk-put.lua "$(base_url arca)/" "/repos/bench/put4k/$RUN_ID"
    else
        run_wrk put4k nginx wrk-put.lua "$(base_url nginx)/" "/put4k/$RUN_ID"
    fi
done

# ---------------------------------------------------------------- memory
vmhwm_kb() { awk '/^VmHWM:/{print $2}' "/proc/$1/status" 2>/dev/null || true; }
if (( HAVE_ARCA )); then
    if kill -0 "$ARCA_PID" 2>/dev/null; then
        kb=$(vmhwm_kb "$ARCA_PID")
        R[rss,arca]=$(awk -v k="${kb:-0}" 'BEGIN{printf "%.1f\n", k/1024}')
    else
        R[rss,arca]=FAIL
        NOTES+=("arcad is no longer running at the end of the bench: see its log")
    fi
    nerr=$(grep -ciE 'error|warn' "$T/arcad.log" || true)
    (( nerr > 0 )) && NOTES+=("arcad log: $nerr lines mention error/warn; e.g.: $(grep -iE 'error|warn' "$T/arcad.log" | head -n 3 | tr '\n' ' ' | head -c 400)")
fi
if (( HAVE_NGINX )); then
    # Largest VmHWM among nginx's workers (each is a separate process).
    mx=0
    for p in $(ps -o pid= --ppid "$NGINX_PID" 2>/dev/null); do
        kb=$(vmhwm_kb "$p"); [[ -n $kb ]] && (( kb > mx )) && mx=$kb
    done
    R[rss,nginx]=$(awk -v k="$mx" 'BEGIN{printf "%.1f\n", k/1024}')
fi

# ---------------------------------------------------------------- report
ratio() {
    local a=${R[$1,arca]:-} n=${R[$1,nginx]:-}
    if [[ -z $a || -z $n || $a == FAIL || $n == FAIL ]]; then echo "n/a"; return; fi
    awk -v a="$a" -v n="$n" 'BEGIN{ if (n+0 == 0) print "n/a"; else printf "%.2f\n", a/n }'
}
met() {  # met METRIC MIN_RATIO
    local r
    r=$(ratio "$1")
    [[ $r == n/a ]] && { [[ ${R[$1,arca]:-} == FAIL ]] && echo "no" || echo "?"; return; }
    awk -v r="$r" -v m="$2" 'BEGIN{ print (r+0 >= m+0) ? "yes" : "NO" }'
}
val() { local v=${R[$1,$2]:-}; [[ -z $v ]] && v="-"; echo "$v"; }

if (( SIZE_MB == 1024 )); then SZ="1 GiB"; else SZ="$SIZE_MB MiB"; fi
ROWS=(
    "upload|$SZ upload, GB/s (median of $RUNS)|>= 1.5x|1.5"
    "updurable|  vs nginx + fdatasync (in nginx column)|-|"
    "ceiling|  vs dd O_DIRECT+fdatasync (in nginx col.)|-|"
    "download|$SZ download, GB/s (median of $RUNS)|>= 0.9x|0.9"
    "tlsdown|$SZ download over TLS, GB/s (median of $RUNS)|-|"
    "get4k|4 KiB GET, req/s (2xx only)|>= 0.8x|0.8"
    "put4k|4 KiB PUT, req/s (2xx only)|-|"
    "rss|peak RSS, MiB (VmHWM; nginx: largest worker)|-|"
)
echo
echo "arca vs nginx, loopback, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) cores ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), $(uname -sr)"
echo "load average before the run: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
echo "wrk -t$WRK_THREADS -c$WRK_CONNS -d${DUR}s; wrk and the servers share the same cores"
echo "nginx workers: $NGINX_WORKERS; access logs: $ACCESS_LOG; GB = 1e9 bytes"
(( HAVE_ARCA )) && echo "arcad: $ARCAD"
echo
printf '%-46s %12s %12s %7s %8s %5s\n' metric arca nginx ratio target met
printf '%-46s %12s %12s %7s %8s %5s\n' "----------------------------------------------" \
    ------------ ------------ ------- -------- -----
TSV="metric	arca	nginx	ratio	target	met"
for row in "${ROWS[@]}"; do
    IFS='|' read -r key label target min <<<"$row"
    a=$(val "$key" arca); n=$(val "$key" nginx)
    (( HAVE_ARCA )) || a="pending"
    r=$(ratio "$key")
    if [[ -n $min ]]; then m=$(met "$key" "$min"); else m="-"; fi
    (( HAVE_ARCA )) || m="-"
    printf '%-46s %12s %12s %7s %8s %5s\n' "$label" "$a" "$n" "$r" "$target" "$m"
    TSV+=$'\n'"$label	$a	$n	$r	$target	$m"
done
echo
for key in upload updurable ceiling download tlsdown get4k put4k; do
    for s in "${SERVERS[@]}" dd; do
        [[ -n ${NOTE[$key,$s]:-} ]] && echo "  $key $s: ${NOTE[$key,$s]}"
    done
done
if (( ${#NOTES[@]} )); then
    echo
    echo "problems:"
    for x in "${NOTES[@]}"; do echo "  - $x"; done
fi
if [[ -n ${BENCH_RESULTS:-} ]]; then
    printf '%s\n' "$TSV" >"$BENCH_RESULTS"
    log "wrote $BENCH_RESULTS"
fi
