#!/usr/bin/env bash
# Soak run: 1,000 healthy clients receive a continuous broadcast while garbage, lying,
# vanishing and slow clients join and leave. Passes when every healthy client got every
# line in order, no healthy client was dropped, the chaos really happened (protocol
# errors answered with their close codes, slow readers came and went), and the server's
# memory came back to within a small margin of where it started. Slow readers that stay
# long enough to outgrow the kernel's socket buffers (a few MB on loopback) and
# --max-backlog are dropped with 1008; how many were is reported.
#
# usage: soak/run.sh [SECONDS]      (default 120; CI runs it shorter)
# env:   WSCAST_BIN, LOADGEN_BIN    use these binaries instead of building them
#        SOAK_CLIENTS (1000), SOAK_RATE (lines/s, 1000), SOAK_MARGIN_KIB (4096)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_TOTAL=${1:-120}
CLIENTS=${SOAK_CLIENTS:-1000}
RATE=${SOAK_RATE:-1000}
MARGIN_KIB=${SOAK_MARGIN_KIB:-4096}
OUT=soak/out
mkdir -p "$OUT"
log() { printf '[soak] %s\n' "$*"; }

if [[ -z ${WSCAST_BIN:-} ]]; then
    log "cargo build --release"
    cargo build --release --quiet
    WSCAST_BIN=${CARGO_TARGET_DIR:-target}/release/wscast
fi
if [[ -z ${LOADGEN_BIN:-} ]]; then
    log "building the load generator (bench/loadgen)"
    CARGO_TARGET_DIR=target/bench cargo build --release --quiet --manifest-path bench/loadgen/Cargo.toml
    LOADGEN_BIN=target/bench/release/loadgen
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PIDS=()
FIFO=$(mktemp -u /tmp/wscast-soak.XXXXXX)
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -f "$FIFO"
}
trap cleanup EXIT
mkfifo "$FIFO"

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

# The server: small backlog so slow readers are dropped quickly; stdin from the fifo,
# held open by fd 9 so feeders can come and go.
"$WSCAST_BIN" --listen 127.0.0.1:0 --no-commands --max-backlog 262144 \
    <"$FIFO" >/dev/null 2>"$OUT/wscast.log" &
SERVER=$!
PIDS+=("$SERVER")
exec 9>"$FIFO"
for _ in $(seq 100); do
    grep -q 'listening on ws://' "$OUT/wscast.log" 2>/dev/null && break
    sleep 0.1
done
PORT=$(grep -o 'ws://127.0.0.1:[0-9]*' "$OUT/wscast.log" | head -1 | cut -d: -f3)
[[ -n $PORT ]] || { log "the server did not start"; cat "$OUT/wscast.log"; exit 1; }
log "server pid $SERVER on port $PORT; $CLIENTS healthy clients, $RATE lines/s for ${SECONDS_TOTAL}s"

"$LOADGEN_BIN" fanout --url "ws://127.0.0.1:$PORT/ws" -n "$CLIENTS" \
    --duration $((SECONDS_TOTAL + 60)) --quiet 15 --server-pid "$SERVER" \
    >"$OUT/fanout.out" 2>"$OUT/fanout.err" &
FANOUT=$!
PIDS+=("$FANOUT")
for _ in $(seq 300); do
    grep -q '^ready' "$OUT/fanout.out" 2>/dev/null && break
    sleep 0.1
done
grep -q '^ready' "$OUT/fanout.out" || { log "clients never got ready"; cat "$OUT/fanout.err"; exit 1; }
sleep 1
RSS_START=$(rss "$SERVER")
log "all $CLIENTS clients connected; server RSS $RSS_START KiB"

python3 soak/chaos.py 127.0.0.1 "$PORT" /ws "$SECONDS_TOTAL" >"$OUT/chaos.out" 2>&1 &
CHAOS=$!
PIDS+=("$CHAOS")
"$LOADGEN_BIN" feed --rate "$RATE" --duration "$SECONDS_TOTAL" --size 64 >&9 2>"$OUT/feed.err"
log "feeder done: $(cat "$OUT/feed.err")"
wait "$CHAOS" || true
log "$(cat "$OUT/chaos.out")"
wait "$FANOUT" || true
RESULT=$(grep '^RESULT' "$OUT/fanout.out" || true)
log "$(cat "$OUT/fanout.err")"

# Let the chaos connections' closing handshakes and deadlines finish, then measure.
sleep 5
RSS_END=$(rss "$SERVER")
HWM=$(hwm "$SERVER")
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$RESULT"; }
LINES=$(field lines) LOST=$(field lost) DROPPED=$(field dropped) DELIVERIES=$(field deliveries)
ERRORS=$(grep -c 'closing with 100[279]' "$OUT/wscast.log" || true)
SLOW=$(grep -c 'too slow' "$OUT/wscast.log" || true)
GROWTH=$((RSS_END - RSS_START))

printf '\n| soak | figure |\n| --- | --- |\n'
printf '| duration, rate | %ss, %s lines/s of 64 bytes |\n' "$SECONDS_TOTAL" "$RATE"
printf '| healthy clients | %s |\n' "$CLIENTS"
printf '| lines, deliveries | %s lines, %s deliveries |\n' "${LINES:-?}" "${DELIVERIES:-?}"
printf '| lost, healthy clients dropped | %s, %s |\n' "${LOST:-?}" "${DROPPED:-?}"
printf '| chaos | %s |\n' "$(sed 's/^chaos: //' "$OUT/chaos.out")"
printf '| closed for protocol errors / dropped as too slow | %s / %s |\n' "$ERRORS" "$SLOW"
printf '| server RSS: start, peak, end | %s KiB, %s KiB, %s KiB (end - start: %s KiB) |\n\n' \
    "$RSS_START" "$HWM" "$RSS_END" "$GROWTH"

fail=0
[[ -n $RESULT ]] || { log "FAIL: no result from the healthy clients"; fail=1; }
[[ ${LOST:-1} == 0 ]] || { log "FAIL: $LOST deliveries lost"; fail=1; }
[[ ${DROPPED:-1} == 0 ]] || { log "FAIL: $DROPPED healthy clients dropped"; fail=1; }
(( ${LINES:-0} > 0 )) || { log "FAIL: no lines delivered"; fail=1; }
(( ERRORS > 0 )) || { log "FAIL: no protocol error was answered: did the chaos run?"; fail=1; }
SLOW_JOINED=$(sed -n 's/.* \([0-9]*\) slow).*/\1/p' "$OUT/chaos.out")
(( ${SLOW_JOINED:-0} > 0 )) || { log "FAIL: no slow reader came and went: did the chaos run?"; fail=1; }
(( GROWTH < MARGIN_KIB )) || { log "FAIL: RSS grew by $GROWTH KiB (margin $MARGIN_KIB KiB)"; fail=1; }
kill -0 "$SERVER" 2>/dev/null || { log "FAIL: the server died"; fail=1; }
if [[ $fail == 0 ]]; then
    log "PASS"
    echo "soak: 1 passed, 0 failed"
else
    echo "soak: 0 passed, 1 failed"
fi
exit "$fail"
