#!/usr/bin/env bash
# TLS (issue 15): wscast --tls-cert/--tls-key against tokio-tungstenite over tokio-rustls
# (the peers tt-echo and tt-broadcast with their --tls-cert/--tls-key: the same rustls
# 0.23 and ring provider as wscast), and plain wscast for reference.
#
#   bench/tls.sh              3 rounds, 10 s loads (~7 min)
#   bench/tls.sh --quick      smoke test: 1 round, 2 s loads, 2,000 idle connections (~1 min)
#   bench/tls.sh --rounds 5   more rounds (medians are reported)
#   bench/tls.sh --load 5     seconds per echo, handshake and fan-out load
#   bench/tls.sh --no-build   use the binaries already in $CARGO_TARGET_DIR/release
#   bench/tls.sh --wscast BIN --label NAME
#                             measure another wscast binary (a build of an earlier commit,
#                             say); results then go to bench/out/tls-NAME.md and .tsv
#   WSCAST_REV=abc1234 bench/tls.sh --no-build
#                             the commit the wscast binary was built from, for the report
#                             (default: the work tree's HEAD, or NAME with --label)
#
# A fresh CA and server certificate (ECDSA P-256, SAN 127.0.0.1 and localhost) are made
# with openssl in a temporary directory; the load generator trusts that CA (`--ca`) and
# offers what browsers offer first (X25519, TLS13_AES_128_GCM_SHA256; see
# bench/loadgen/src/tls.rs). In each round, alternating the servers so the machine's
# noise falls on all of them alike:
# 1. idle: 10,000 connections held (TLS handshake and upgrade done, then nothing): server
#    RSS growth per connection. wscast-tls (--mode echo) vs tt-echo-tls; wscast plain for
#    reference. Goal: wscast-tls <= 4 KiB and <= 1/4 of the peer.
# 2. fan-out: 1,000 clients, the feeder writing 64-byte lines into stdin at max rate for
#    LOAD s: lines lost (goal: none for wscast), deliveries per server CPU-second.
#    wscast-tls vs tt-broadcast-tls (goal >= 5x); wscast plain for reference.
# 3. echo: 100 connections x 20 B, closed loop, LOAD s: messages per server CPU-second,
#    wscast-tls --mode echo vs tt-echo-tls one after the other, and as a side-by-side
#    pair (both servers on the server CPU at once, a load generator each; the ratio the
#    machine's noise moves least, as in bench/run.sh). Goal >= 1.0x. wscast plain alone
#    for reference.
# 4. handshakes: 32 at a time, each TCP connect + TLS handshake (full, no resumption) +
#    upgrade + close handshake, LOAD s: per server CPU-second, wscast-tls vs tt-echo-tls
#    (no goal set); wscast plain for reference.
# Then, once: `tls-sizes` (bench/peers/peer-tls) counts the heap a rustls server
# session keeps per idle connection, for the note on what the idle figure is made of.
#
# Server on CPU 0, load generator and feeder on CPU 1 (taskset), like bench/run.sh, whose
# helpers it shares (bench/lib.sh). 127.0.0.1 only; every process it starts is killed on
# exit, every load is bounded in time. Results: bench/out/tls.md, raw numbers
# bench/out/tls.tsv, each server's stderr in bench/out/tls-err/ when it said anything
# (and the fan-out load generator's).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/bench}
BIN=$CARGO_TARGET_DIR/release
OUT=${BENCH_OUT:-$HERE/out}

ROUNDS=3 LOAD=10 FAN_N=1000 IDLE_N=10000 ECHO_C=100 ECHO_SIZE=20 HS_C=32
# Each fan-out client's SO_RCVBUF, as in bench/run.sh.
FAN_RCVBUF=131072
QUICK=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --quick) QUICK=1 ROUNDS=1 LOAD=2 IDLE_N=2000 ;;
    --rounds) ROUNDS=$2; shift ;;
    --load) LOAD=$2; shift ;;
    --no-build) NO_BUILD=1 ;;
    --wscast) WSCAST_BIN=$2; shift ;;
    --label) LABEL=$2; shift ;;
    -h | --help) sed -n '2,46p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

SERVER_CPU=0 LOAD_CPU=1
if [[ $(nproc) -lt 2 ]]; then
    echo "warning: fewer than 2 CPUs; server and load generator share one" >&2
    LOAD_CPU=0
fi

# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
CERTS=
trap 'cleanup; [[ -n $CERTS ]] && rm -rf "$CERTS"' EXIT

if [[ -z ${NO_BUILD:-} ]]; then
    log "building wscast, loadgen and the peers (release) into $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release --quiet --bin wscast)
    (cd "$HERE/loadgen" && cargo build --release --quiet)
    (cd "$HERE/peers" && cargo build --release --quiet)
fi
for b in wscast loadgen tt-echo tt-broadcast tls-sizes; do
    [[ -x $BIN/$b ]] || { echo "missing $BIN/$b" >&2; exit 1; }
done
[[ -z ${WSCAST_BIN:-} || -x $WSCAST_BIN ]] || { echo "missing $WSCAST_BIN" >&2; exit 1; }
REV=${WSCAST_REV:-${LABEL:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')}}
NAME=tls${LABEL:+-$LABEL}
command -v openssl >/dev/null || { echo "openssl is needed to make the certificates" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ $(ulimit -n) -lt $((IDLE_N + 100)) ]]; then
    echo "open-files limit $(ulimit -n) is too low for $IDLE_N connections" >&2
    exit 1
fi

mkdir -p "$OUT"
RAW=$OUT/$NAME.tsv
: >"$RAW"
# Each server's stderr that said anything, and the fan-out load generator's.
ERRS=$OUT/$NAME-err
rm -rf "$ERRS"
mkdir -p "$ERRS"
FIFO=$(mktemp -u /tmp/wscast-tls.XXXXXX)
FAILED=()

# --- certificates --------------------------------------------------------------------
# A CA, and a server certificate it signs, both ECDSA P-256 (what most public CAs
# issue for new sites today; an RSA-2048 signature would cost the server ~1 ms more per
# handshake, the same for both servers).
CERTS=$(mktemp -d /tmp/wscast-tls-certs.XXXXXX)
(
    cd "$CERTS"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=wscast bench CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign -out ca.pem
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key
    openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
    printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'basicConstraints=critical,CA:FALSE' \
        'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -sha256 \
        -extfile server.ext -out server.pem
) >"$ERRS/openssl.log" 2>&1 || { cat "$ERRS/openssl.log" >&2; exit 1; }
CA=$CERTS/ca.pem

# first_line PATTERN FILE: the first match of PATTERN in FILE, or nothing.
first_line() { grep -o -m1 "$1" "$2" 2>/dev/null || true; }

# --- variants ------------------------------------------------------------------------
# variant VARIANT: sets what start_server needs for it (SERVER: the binary's name in
# start_server; the TLS flags; the URL scheme) and LG, the extra loadgen flags.
variant() {
    case $1 in
    wscast-tls) SERVER=wscast SCHEME=wss WSCAST_FLAGS=(--tls-cert "$CERTS/server.pem" --tls-key "$CERTS/server.key") ;;
    wscast) SERVER=wscast SCHEME=ws WSCAST_FLAGS=() ;;
    tt-tls) SERVER=$2 SCHEME=wss PEER_FLAGS=(--tls-cert "$CERTS/server.pem" --tls-key "$CERTS/server.key") ;;
    esac
    if [[ $SCHEME == wss ]]; then LG=(--ca "$CA"); else LG=(); fi
}

# keep_err VARIANT SCENARIO: keeps the server's stderr when it said anything (wscast
# runs at --log-level warn: any line is a warning or an error, but for the start-up
# note that the open-files limit is below lib.sh's --max-connections 50000; a peer's
# first line says where it listens).
keep_err() {
    local f=$OUT/$SERVER.err
    grep -v -e 'open-file limit' -e '^listening on ws' "$f" >"$f.kept" || true
    mv "$f.kept" "$f"
    if [[ -s $f ]]; then
        cp "$f" "$ERRS/$2-$1-$round.err"
        if [[ $SERVER == wscast ]]; then
            FAILED+=("$2 $1 round $round: wscast wrote $(wc -l <"$f") line(s) on stderr, e.g. \"$(head -n1 "$f" | cut -c1-160)\" ($ERRS/$2-$1-$round.err)")
        fi
    fi
}

# idle VARIANT: IDLE_N connections held; RSS growth per connection.
idle() {
    local v=$1 before after line open per peer=tt-echo
    variant "$v" "$peer"
    start_server "$SERVER" echo
    sleep 0.3
    before=$(rss_kb "$SPID" VmRSS)
    loadgen_bg "$OUT/idle.out" idle --url "$URL" -n "$IDLE_N" --hold 600 "${LG[@]}"
    if ! wait_ready "$OUT/idle.out"; then
        FAILED+=("idle $v round $round: not ready")
        kill "$LPID" 2>/dev/null || true
        stop_server
        return
    fi
    sleep 1
    after=$(rss_kb "$SPID" VmRSS)
    kill "$LPID"; wait "$LPID" 2>/dev/null || true
    line=$(grep '^ready' "$OUT/idle.out")
    open=${line#ready }
    stop_server
    keep_err "$v" idle
    per=$(((after - before) * 1024 / open))
    record idle "$v" bytes_per_conn "$per"
    record idle "$v" open "$open"
    log "idle $v: $open connections, RSS $before -> $after kB = $per B/connection"
    [[ $open == "$IDLE_N" ]] || FAILED+=("idle $v round $round: $open of $IDLE_N open ($(first_line 'first: .*' "$OUT/idle.out.err"))")
}

# fan VARIANT: 1,000 clients, 64-byte lines at max rate.
fan() {
    local v=$1 r
    variant "$v" tt-broadcast
    FANOUT_FLAGS=("${LG[@]}")
    run_fanout "$SERVER" fanout --rate max --duration "$LOAD" --size 64
    FANOUT_FLAGS=()
    keep_err "$v" fan
    cp "$OUT/fan.out.err" "$ERRS/fan-$v-$round.loadgen.err"
    r=$FAN_RESULT
    if [[ -z $r ]]; then
        FAILED+=("fan $v round $round: no result")
        return
    fi
    local k
    for k in per_server_cpu_s rate lines deliveries lost dropped server_cpu_pct loadgen_cpu_pct p50_us p99_us; do
        record fan "$v" "$k" "$(field "$r" "$k")"
    done
    record fan "$v" lost_pct "$(awk -v l="$(field "$r" lost)" -v n="$(field "$r" lines)" -v c="$(field "$r" clients)" 'BEGIN { if (n * c > 0) printf "%.2f\n", 100 * l / (n * c); else print 0 }')"
    LAST[$v]=$(field "$r" per_server_cpu_s)
    log "fan $v: $(field "$r" lines) lines x $(field "$r" clients) clients, $(field "$r" per_server_cpu_s) deliveries/server-CPU-s, $(field "$r" rate)/s, lost $(field "$r" lost), dropped $(field "$r" dropped), server $(pct "$(field "$r" server_cpu_pct)")% loadgen $(pct "$(field "$r" loadgen_cpu_pct)")%"
    if [[ $v != tt-tls && ($(field "$r" lost) != 0 || $(field "$r" dropped) != 0) ]]; then
        FAILED+=("fan $v round $round: lost $(field "$r" lost) of $(field "$r" lines) lines x $(field "$r" clients), dropped $(field "$r" dropped) ($(first_line 'first error: .*' "$OUT/fan.out.err"))")
    fi
}

# echo VARIANT: one server, 100 x 20 B closed loop.
echo_one() {
    local v=$1 r
    variant "$v" tt-echo
    start_server "$SERVER" echo
    r=$(taskset -c "$LOAD_CPU" "$BIN/loadgen" echo --url "$URL" -c "$ECHO_C" --size "$ECHO_SIZE" \
        --duration "$LOAD" --server-pid "$SPID" "${LG[@]}" 2>"$OUT/echo.err" | grep '^RESULT' || true)
    stop_server
    keep_err "$v" echo
    if [[ -z $r ]]; then FAILED+=("echo $v round $round: no result ($(tail -n1 "$OUT/echo.err" || true))"); return; fi
    local k
    for k in per_server_cpu_s rate server_cpu_pct loadgen_cpu_pct p99_us wrong failed; do
        record echo "$v" "$k" "$(field "$r" "$k")"
    done
    LAST[$v]=$(field "$r" per_server_cpu_s)
    log "echo $v: $(field "$r" rate) msg/s, $(field "$r" per_server_cpu_s)/server-CPU-s, server $(pct "$(field "$r" server_cpu_pct)")% loadgen $(pct "$(field "$r" loadgen_cpu_pct)")%, wrong $(field "$r" wrong), failed $(field "$r" failed)"
    [[ $(field "$r" wrong) == 0 && $(field "$r" failed) == 0 ]] || FAILED+=("echo $v round $round: wrong $(field "$r" wrong), failed $(field "$r" failed)")
}

# echo_pair: wscast-tls and tt-echo-tls at the same time on SERVER_CPU, a load generator
# each on LOAD_CPU; records wscast-tls ÷ tt-echo-tls per server CPU-second.
echo_pair() {
    local wpid wurl ppid purl l1 l2 rw rp
    variant wscast-tls
    start_server wscast echo
    wpid=$SPID wurl=$URL
    variant tt-tls tt-echo
    start_server tt-echo echo
    ppid=$SPID purl=$URL
    taskset -c "$LOAD_CPU" "$BIN/loadgen" echo --url "$wurl" -c "$ECHO_C" --size "$ECHO_SIZE" \
        --duration "$LOAD" --server-pid "$wpid" --ca "$CA" >"$OUT/pair.wscast" 2>"$OUT/pair.wscast.err" &
    l1=$!
    taskset -c "$LOAD_CPU" "$BIN/loadgen" echo --url "$purl" -c "$ECHO_C" --size "$ECHO_SIZE" \
        --duration "$LOAD" --server-pid "$ppid" --ca "$CA" >"$OUT/pair.peer" 2>"$OUT/pair.peer.err" &
    l2=$!
    PIDS+=("$l1" "$l2")
    wait "$l1" "$l2" || true
    kill "$wpid" "$ppid" 2>/dev/null || true
    wait "$wpid" "$ppid" 2>/dev/null || true
    SPID=
    SERVER=wscast keep_err pair echo
    rw=$(field "$(grep '^RESULT' "$OUT/pair.wscast" || true)" per_server_cpu_s)
    rp=$(field "$(grep '^RESULT' "$OUT/pair.peer" || true)" per_server_cpu_s)
    if [[ -z $rw || -z $rp ]]; then FAILED+=("echo pair round $round: no result"); return; fi
    record pair wscast-tls per_server_cpu_s "$rw"
    record pair tt-tls per_server_cpu_s "$rp"
    record pair ratio wscast_vs_tt "$(awk -v a="$rw" -v b="$rp" 'BEGIN { if (b > 0) printf "%.4f\n", a / b }')"
    log "echo pair: wscast-tls $rw vs tt-echo-tls $rp per server-CPU-s"
}

# hs VARIANT: handshakes, HS_C at a time.
hs() {
    local v=$1 r
    variant "$v" tt-echo
    start_server "$SERVER" echo
    r=$(taskset -c "$LOAD_CPU" "$BIN/loadgen" handshake --url "$URL" -c "$HS_C" \
        --duration "$LOAD" --server-pid "$SPID" "${LG[@]}" 2>"$OUT/hs.err" | grep '^RESULT' || true)
    stop_server
    keep_err "$v" hs
    if [[ -z $r ]]; then FAILED+=("hs $v round $round: no result ($(tail -n1 "$OUT/hs.err" || true))"); return; fi
    local k
    for k in per_server_cpu_s rate completed failed server_cpu_pct loadgen_cpu_pct p50_us p99_us; do
        record hs "$v" "$k" "$(field "$r" "$k")"
    done
    LAST[$v]=$(field "$r" per_server_cpu_s)
    log "hs $v: $(field "$r" rate)/s, $(field "$r" per_server_cpu_s)/server-CPU-s, failed $(field "$r" failed), server $(pct "$(field "$r" server_cpu_pct)")% loadgen $(pct "$(field "$r" loadgen_cpu_pct)")%"
    [[ $(field "$r" failed) == 0 ]] || FAILED+=("hs $v round $round: $(field "$r" failed) failed ($(first_line 'first: .*' "$OUT/hs.err"))")
}

# ratio_rec SCENARIO: this round's wscast-tls ÷ tt-tls and wscast-tls ÷ wscast.
ratio_rec() {
    record "ratio_$1" wscast-tls vs_tt "$(awk -v a="${LAST[wscast-tls]:-0}" -v b="${LAST[tt-tls]:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.3f\n", a / b }')"
    record "ratio_$1" wscast-tls vs_plain "$(awk -v a="${LAST[wscast-tls]:-0}" -v b="${LAST[wscast]:-0}" 'BEGIN { if (a > 0 && b > 0) printf "%.3f\n", a / b }')"
    LAST=()
}

# --- run -----------------------------------------------------------------------------
STARTED=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A LAST
for round in $(seq "$ROUNDS"); do
    log "=== round $round of $ROUNDS"
    # Alternate the order from round to round.
    if ((round % 2)); then ORDER=(wscast-tls tt-tls wscast); else ORDER=(tt-tls wscast-tls wscast); fi
    for v in "${ORDER[@]}"; do idle "$v"; done
    for v in "${ORDER[@]}"; do fan "$v"; done
    ratio_rec fan
    for v in "${ORDER[@]}"; do echo_one "$v"; done
    ratio_rec echo
    echo_pair
    for v in "${ORDER[@]}"; do hs "$v"; done
    ratio_rec hs
done
SIZES=$(taskset -c "$LOAD_CPU" "$BIN/tls-sizes" --cert "$CERTS/server.pem" --key "$CERTS/server.key" --ca "$CA" 2>"$ERRS/tls-sizes.err" || true)
ELAPSED=$(($(date +%s) - STARTED))

M() { median "$1" "$2" "$3"; }
rounds() { awk -F'\t' -v s="$1" -v v="$2" -v m="$3" '$1 == s && $2 == v && $3 == m {printf "%s%s", sep, $4; sep = ", "}' "$RAW"; }
# roundsf: the same, rates written short (12.3 k, 4.56 M), ratios with 2 decimals.
roundsf() {
    awk -F'\t' -v s="$1" -v v="$2" -v m="$3" '$1 == s && $2 == v && $3 == m && $4 != "" {
        x = $4 + 0
        if (x >= 1e6) t = sprintf("%.2f M", x / 1e6); else if (x >= 1e4) t = sprintf("%.1f k", x / 1e3); else if (x >= 100) t = sprintf("%.0f", x); else t = sprintf("%.2f", x)
        printf "%s%s", sep, t; sep = ", " }' "$RAW"
}
fmt() { awk -v n="$1" 'BEGIN { if (n == "" || n == "-") print "-"; else if (n >= 1e6) printf "%.2f M\n", n / 1e6; else if (n >= 1e4) printf "%.1f k\n", n / 1e3; else printf "%.0f\n", n }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "-" && b != "-" && b > 0) printf "%.2f\n", a / b; else print "-" }'; }
verdict() { awk -v a="$1" -v b="$2" "BEGIN { if (a == \"-\" || a == \"\") print \"-\"; else if ($3) print \"**met**\"; else print \"not met\" }"; }
{
    echo "### TLS: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), Linux $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)."
    echo "wscast $REV; $(rustc --version | cut -d' ' -f1-2); rustls 0.23 (ring) on both servers and the clients; ECDSA P-256 certificate, X25519, TLS 1.3 AES-128-GCM."
    echo "Median of $ROUNDS round(s), $LOAD s per load, $IDLE_N idle connections, $FAN_N fan-out clients; server on CPU $SERVER_CPU, load on CPU $LOAD_CPU."
    echo "Load averages before/after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg); the run took ${ELAPSED} s."
    echo
    iw=$(M idle wscast-tls bytes_per_conn) it=$(M idle tt-tls bytes_per_conn) ip=$(M idle wscast bytes_per_conn)
    fw=$(M fan wscast-tls per_server_cpu_s) ft=$(M fan tt-tls per_server_cpu_s) fp=$(M fan wscast per_server_cpu_s)
    ew=$(M echo wscast-tls per_server_cpu_s) et=$(M echo tt-tls per_server_cpu_s) ep=$(M echo wscast per_server_cpu_s)
    hw=$(M hs wscast-tls per_server_cpu_s) ht=$(M hs tt-tls per_server_cpu_s) hp=$(M hs wscast per_server_cpu_s)
    pr=$(awk -v r="$(M pair ratio wscast_vs_tt)" 'BEGIN { if (r == "-") print r; else printf "%.2f\n", r }')
    echo "| # | measurement | wscast TLS (rounds) | tt TLS, tokio-rustls (rounds) | wscast ÷ tt | goal | verdict | wscast plain (rounds) |"
    echo "|---|---|---|---|---|---|---|---|"
    echo "| 1 | idle, $IDLE_N connections: RSS growth per connection | $iw B ($(rounds idle wscast-tls bytes_per_conn)) | tt-echo $it B ($(rounds idle tt-tls bytes_per_conn)) | $(div "$iw" "$it")× | ≤ 4096 B and ≤ 0.25× | $(verdict "$iw" "$it" 'a <= 4096 && a <= b / 4') | $ip B ($(rounds idle wscast bytes_per_conn)) |"
    echo "| 2 | fan-out, $FAN_N clients, 64 B lines at max rate: deliveries per server CPU-s | $(fmt "$fw") ($(roundsf fan wscast-tls per_server_cpu_s)) | tt-broadcast $(fmt "$ft") ($(roundsf fan tt-tls per_server_cpu_s)) | $(div "$fw" "$ft")× (rounds: $(roundsf ratio_fan wscast-tls vs_tt)) | ≥ 5× | $(verdict "$(div "$fw" "$ft")" 5 'a >= b') | $(fmt "$fp") ($(roundsf fan wscast per_server_cpu_s)) |"
    echo "| 2 | 〃 lines lost (% of lines × clients); clients dropped | $(M fan wscast-tls lost_pct)% of $(fmt "$(M fan wscast-tls lines)") lines; $(M fan wscast-tls dropped) | $(M fan tt-tls lost_pct)% of $(fmt "$(M fan tt-tls lines)") lines; $(M fan tt-tls dropped) | | 0 (wscast) | $(verdict "$(M fan wscast-tls lost)" "$(M fan wscast-tls dropped)" 'a == 0 && b == 0') | $(M fan wscast lost_pct)%; $(M fan wscast dropped) |"
    echo "| 2 | 〃 deliveries/s; CPU server / load generator | $(fmt "$(M fan wscast-tls rate)"); $(pct "$(M fan wscast-tls server_cpu_pct)")% / $(pct "$(M fan wscast-tls loadgen_cpu_pct)")% | $(fmt "$(M fan tt-tls rate)"); $(pct "$(M fan tt-tls server_cpu_pct)")% / $(pct "$(M fan tt-tls loadgen_cpu_pct)")% | | | | $(fmt "$(M fan wscast rate)"); $(pct "$(M fan wscast server_cpu_pct)")% / $(pct "$(M fan wscast loadgen_cpu_pct)")% |"
    echo "| 3 | echo $ECHO_C × $ECHO_SIZE B: messages per server CPU-s, side by side (median of the pairs' ratios) | $(fmt "$(M pair wscast-tls per_server_cpu_s)") | tt-echo $(fmt "$(M pair tt-tls per_server_cpu_s)") | $pr× (pairs: $(roundsf pair ratio wscast_vs_tt)) | ≥ 1.0× | $(verdict "$pr" 1 'a >= b') | |"
    echo "| 3 | 〃 one server at a time | $(fmt "$ew") ($(roundsf echo wscast-tls per_server_cpu_s)) | tt-echo $(fmt "$et") ($(roundsf echo tt-tls per_server_cpu_s)) | $(div "$ew" "$et")× | | | $(fmt "$ep") ($(roundsf echo wscast per_server_cpu_s)) |"
    echo "| 3 | 〃 messages/s; CPU server / load generator; p99 | $(fmt "$(M echo wscast-tls rate)"); $(pct "$(M echo wscast-tls server_cpu_pct)")% / $(pct "$(M echo wscast-tls loadgen_cpu_pct)")%; $(M echo wscast-tls p99_us) µs | $(fmt "$(M echo tt-tls rate)"); $(pct "$(M echo tt-tls server_cpu_pct)")% / $(pct "$(M echo tt-tls loadgen_cpu_pct)")%; $(M echo tt-tls p99_us) µs | | | | $(fmt "$(M echo wscast rate)"); $(pct "$(M echo wscast server_cpu_pct)")% / $(pct "$(M echo wscast loadgen_cpu_pct)")%; $(M echo wscast p99_us) µs |"
    echo "| 4 | handshakes (TCP + full TLS 1.3 + upgrade + close), $HS_C at a time: per server CPU-s | $(fmt "$hw") ($(roundsf hs wscast-tls per_server_cpu_s)) | tt-echo $(fmt "$ht") ($(roundsf hs tt-tls per_server_cpu_s)) | $(div "$hw" "$ht")× (rounds: $(roundsf ratio_hs wscast-tls vs_tt)) | none set | | $(fmt "$hp") ($(roundsf hs wscast per_server_cpu_s)) |"
    echo "| 4 | 〃 per second; CPU server / load generator; failed | $(fmt "$(M hs wscast-tls rate)"); $(pct "$(M hs wscast-tls server_cpu_pct)")% / $(pct "$(M hs wscast-tls loadgen_cpu_pct)")%; $(M hs wscast-tls failed) | $(fmt "$(M hs tt-tls rate)"); $(pct "$(M hs tt-tls server_cpu_pct)")% / $(pct "$(M hs tt-tls loadgen_cpu_pct)")%; $(M hs tt-tls failed) | | | | $(fmt "$(M hs wscast rate)"); $(pct "$(M hs wscast server_cpu_pct)")% / $(pct "$(M hs wscast loadgen_cpu_pct)")%; $(M hs wscast failed) |"
    echo
    echo "wscast TLS ÷ wscast plain, per server CPU-s: fan-out $(div "$fw" "$fp")×, echo $(div "$ew" "$ep")×, handshakes $(div "$hw" "$hp")×; idle memory +$(awk -v a="$iw" -v b="$ip" 'BEGIN { if (a != "-" && b != "-") print a - b; else print "-" }') B per connection."
    echo "Ratios are of medians unless said otherwise (\"rounds\": each round's own ratio). Raw numbers: \`bench/out/$NAME.tsv\`."
    if [[ -n $SIZES ]]; then
        echo
        echo "What a rustls 0.23 server session keeps per idle connection (\`tls-sizes\`: in-memory handshakes with this certificate, heap counted by a counting allocator):"
        echo
        echo '```'
        echo "$SIZES"
        echo '```'
    fi
    if [[ ${#FAILED[@]} -gt 0 ]]; then
        echo
        echo "Problems:"
        printf -- '- %s\n' "${FAILED[@]}"
    fi
} | tee "$OUT/$NAME.md"
