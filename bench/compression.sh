#!/usr/bin/env bash
# Compression (permessage-deflate, RFC 7692): what the shared deflate stream costs and
# saves, on a realistic corpus: JSON log lines of ~200-250 bytes with time stamps,
# levels, paths and random trace ids (`loadgen feed --corpus json`).
#
#   bench/compression.sh              3 rounds, 5 s fan-out loads (~6-8 min)
#   bench/compression.sh --quick      smoke test: 1 round, 2 s loads, 2,000 idle connections
#   bench/compression.sh --rounds 5   more rounds (medians are reported)
#   bench/compression.sh --load 10    seconds of feeding per fan-out
#   bench/compression.sh --no-build   use the binaries already in $CARGO_TARGET_DIR/release
#
# In each round, alternating so the machine's noise falls on every variant alike:
# 1. fan-out, 1,000 clients, the feeder writing JSON lines into stdin at max rate:
#      plain     clients offer nothing (wscast sends the lines as they are)
#      deflate   every client offers permessage-deflate and inflates with one inflater
#                kept across messages (loadgen fanout --deflate; a window out of step
#                with the server's stream fails the client and counts as loss)
#    deliveries per server CPU-second (goal: deflate >= 0.8x plain) and bytes on the
#    wire per delivery (goal: deflate <= 1/3 of plain).
# 2. scaling: plain and deflate with 100 and 5,000 clients (1,000 is run 1's): server
#    CPU per delivery must not grow with the clients (the line is compressed once for
#    all); plain shows what the fan-out itself does with the client count.
# 3. the peer: py-broadcast (Python `websockets`, broadcast() with its default
#    permessage-deflate: one deflate stream per client) with 1,000 deflate clients:
#    wscast / peer deliveries per server CPU-second (goal >= 20x), the peer's wire ratio.
# 4. idle: 10,000 connections held, plain vs deflate negotiated: server RSS growth per
#    connection (goal <= 256 B for both).
# 5. the deflate library: `loadgen deflate-cost`, zlib-rs (wscast's) vs miniz_oxide, on
#    the same corpus: us per KiB and ratio.
# 6. bombs: bench/bomb.py, 10 clients at once each sending one ~1 MB frame that inflates
#    to 1 GiB, against the default --max-message (16 MiB): every one closed with 1009,
#    and the server's peak RSS growth (VmHWM) against the 16 MiB it may inflate.
#
# Server on CPU 0, load generator and feeder on CPU 1 (taskset), like bench/run.sh, whose
# helpers it shares (bench/lib.sh). 127.0.0.1 only; every process it starts is killed on
# exit. Results: bench/out/compression.md, raw numbers bench/out/compression.tsv.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/bench}
BIN=$CARGO_TARGET_DIR/release
OUT=${BENCH_OUT:-$HERE/out}
PY_VENV=${PY_VENV:-$CARGO_TARGET_DIR/py-venv}

ROUNDS=3 LOAD=5 FAN_N=1000 IDLE_N=10000 SCALE=(100 5000)
# Each client's SO_RCVBUF, as in bench/run.sh.
FAN_RCVBUF=131072
while [[ $# -gt 0 ]]; do
    case $1 in
    --quick) ROUNDS=1 LOAD=2 IDLE_N=2000 ;;
    --rounds) ROUNDS=$2; shift ;;
    --load) LOAD=$2; shift ;;
    --no-build) NO_BUILD=1 ;;
    -h | --help) sed -n '2,35p' "${BASH_SOURCE[0]}"; exit 0 ;;
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
die() { log "$*"; exit 1; }
# shellcheck source=tests/python-venv.sh
source "$ROOT/tests/python-venv.sh"

if [[ -z ${NO_BUILD:-} ]]; then
    log "building wscast and loadgen (release) into $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release --quiet --bin wscast)
    (cd "$HERE/loadgen" && cargo build --release --quiet)
fi
for b in wscast loadgen; do
    [[ -x $BIN/$b ]] || { echo "missing $BIN/$b" >&2; exit 1; }
done
ensure_venv "$PY_VENV" "$HERE/peers/py-broadcast/requirements.txt" websockets
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ $(ulimit -n) -lt $((IDLE_N + 100)) ]]; then
    echo "open-files limit $(ulimit -n) is too low" >&2
    exit 1
fi

mkdir -p "$OUT"
RAW=$OUT/compression.tsv
: >"$RAW"
FIFO=$(mktemp -u /tmp/wscast-compression.XXXXXX)
# A client that negotiated the shared stream joins it at the next reset (SPEC: every
# --compression-epoch, default 5 s, or 1 MiB of input) and gets the feed uncompressed
# until then. The fan-outs measure the steady state, every client in the stream: wscast
# runs with a 1 s epoch and the feeder starts 1.5 s after the clients are open.
WSCAST_FLAGS=(--compression-epoch 1) FANOUT_FLAGS=()
FANOUT_SETTLE=1.5
FAILED=()

# per DELIVERIES-FIELD: awk helpers on a RESULT line.
ratio_of() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f\n", a / b }'; }

# fan VARIANT SERVER CLIENTS [loadgen flags...]: one fan-out of the JSON corpus.
fan() {
    local v=$1 server=$2 n=$3 r
    shift 3
    FANOUT_FLAGS=("$@")
    FAN_N=$n
    run_fanout "$server" "$v" --corpus json --rate max --duration "$LOAD"
    FANOUT_FLAGS=()
    cp "$OUT/fan.out.err" "$OUT/fan-$v-$round.err"
    r=$FAN_RESULT
    if [[ -z $r ]]; then
        FAILED+=("$v round $round: no result")
        return
    fi
    local k
    for k in per_server_cpu_s rate lines deliveries lost dropped inflate_failed compressed server_cpu_pct loadgen_cpu_pct; do
        record fan "$v" "$k" "$(field "$r" "$k")"
    done
    local wire cpu_ns
    wire=$(ratio_of "$(field "$r" wire_bytes)" "$(field "$r" deliveries)")
    cpu_ns=$(awk -v p="$(field "$r" per_server_cpu_s)" 'BEGIN { if (p > 0) printf "%.1f\n", 1e9 / p }')
    record fan "$v" wire_per_delivery "$wire"
    record fan "$v" cpu_ns_per_delivery "$cpu_ns"
    record fan "$v" compressed_share "$(awk -v c="$(field "$r" compressed)" -v d="$(field "$r" deliveries)" 'BEGIN { if (d > 0) printf "%.3f\n", c / d }')"
    LAST[$v]=$(field "$r" per_server_cpu_s)
    LAST_WIRE[$v]=$wire
    log "fan $v ($n clients): $(field "$r" lines) lines, $(field "$r" per_server_cpu_s) deliveries/server-CPU-s ($cpu_ns ns each), $wire wire B/delivery, $(field "$r" compressed) of $(field "$r" deliveries) compressed, lost $(field "$r" lost), dropped $(field "$r" dropped), inflate failures $(field "$r" inflate_failed), server $(pct "$(field "$r" server_cpu_pct)")% loadgen $(pct "$(field "$r" loadgen_cpu_pct)")%"
    if [[ $(field "$r" lost) != 0 || $(field "$r" dropped) != 0 || $(field "$r" inflate_failed) != 0 ]]; then
        FAILED+=("$v round $round: lost $(field "$r" lost), dropped $(field "$r" dropped), inflate failures $(field "$r" inflate_failed)")
    fi
}

# idle VARIANT [--deflate]: IDLE_N connections held on a broadcast server.
idle() {
    local v=$1 before after line open per
    shift
    start_server wscast broadcast
    sleep 0.3
    before=$(rss_kb "$SPID" VmRSS)
    loadgen_bg "$OUT/idle.out" idle --url "$URL" -n "$IDLE_N" --hold 600 "$@"
    wait_ready "$OUT/idle.out" || { FAILED+=("idle $v: not ready"); stop_server; return; }
    sleep 1
    after=$(rss_kb "$SPID" VmRSS)
    kill "$LPID"; wait "$LPID" 2>/dev/null || true
    line=$(grep '^ready' "$OUT/idle.out")
    open=${line#ready }
    stop_server
    per=$(((after - before) * 1024 / open))
    record idle "$v" bytes_per_conn "$per"
    log "idle $v: $open connections, RSS $before -> $after kB = $per B/connection"
    [[ $open == "$IDLE_N" ]] || FAILED+=("idle $v: $open of $IDLE_N open")
}

# bombs: decompression bombs against a broadcast server with the default limit.
bombs() {
    local hwm0 hwm1 r
    start_server wscast broadcast
    sleep 0.3
    hwm0=$(rss_kb "$SPID" VmHWM)
    r=$(taskset -c "$LOAD_CPU" python3 "$HERE/bomb.py" "${URL#ws://}" --clients 10 --inflated-mib 1024 2>"$OUT/bomb.err" | grep '^RESULT' || true)
    hwm1=$(rss_kb "$SPID" VmHWM)
    stop_server
    if [[ -z $r ]]; then FAILED+=("bombs: no result ($(tail -n1 "$OUT/bomb.err"))"); return; fi
    record bomb wscast closed_1009 "$(field "$r" closed_1009)"
    record bomb wscast wire_bytes "$(field "$r" wire_bytes)"
    record bomb wscast peak_growth_kb "$((hwm1 - hwm0))"
    log "bombs: $(field "$r" closed_1009) of 10 closed with 1009; each $(field "$r" wire_bytes) B inflating to 1 GiB; server peak RSS $hwm0 -> $hwm1 kB"
    [[ $(field "$r" closed_1009) == 10 ]] || FAILED+=("bombs: only $(field "$r" closed_1009) of 10 closed with 1009 ($(field "$r" codes))")
}

# --- run -----------------------------------------------------------------------------
STARTED=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A LAST LAST_WIRE

log "deflate library cost (loadgen deflate-cost, CPU $LOAD_CPU)"
COST=$(taskset -c "$LOAD_CPU" "$BIN/loadgen" deflate-cost --lines 20000 --rounds 5 2>"$OUT/deflate-cost.err" | grep '^RESULT')
cat "$OUT/deflate-cost.err" >&2

for round in $(seq "$ROUNDS"); do
    log "=== round $round of $ROUNDS"
    fan plain wscast 1000
    fan deflate wscast 1000 --deflate
    record ratio deflate per_cpu_vs_plain "$(awk -v a="${LAST[deflate]:-0}" -v b="${LAST[plain]:-0}" 'BEGIN { if (b > 0) printf "%.3f\n", a / b }')"
    record ratio deflate wire_vs_plain "$(awk -v a="${LAST_WIRE[deflate]:-0}" -v b="${LAST_WIRE[plain]:-0}" 'BEGIN { if (b > 0) printf "%.3f\n", a / b }')"
    for n in "${SCALE[@]}"; do
        fan "plain$n" wscast "$n"
        fan "deflate$n" wscast "$n" --deflate
    done
    # The peer delivers ~15 lines a second to 1,000 clients: the ~500 lines that fit in
    # the pipe and its buffer take it ~40 s, near the default limit (45 s at --load 5).
    FANOUT_DURATION=120 fan peer py-broadcast 1000 --deflate
    record ratio peer wscast_vs_peer_per_cpu "$(awk -v a="${LAST[deflate]:-0}" -v b="${LAST[peer]:-0}" 'BEGIN { if (b > 0) printf "%.1f\n", a / b }')"
    record ratio peer wire_vs_plain "$(awk -v a="${LAST_WIRE[peer]:-0}" -v b="${LAST_WIRE[plain]:-0}" 'BEGIN { if (b > 0) printf "%.3f\n", a / b }')"
    idle idle-plain
    idle idle-deflate --deflate
    bombs
done
ELAPSED=$(($(date +%s) - STARTED))

M() { median "$1" "$2" "$3"; }
rounds() { awk -F'\t' -v s="$1" -v v="$2" -v m="$3" '$1 == s && $2 == v && $3 == m {printf "%s%s", sep, $4; sep = ", "}' "$RAW"; }
{
    echo "### Compression: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), Linux $(uname -r)."
    echo "wscast $(git -C "$ROOT" rev-parse --short HEAD); $(rustc --version | cut -d' ' -f1-2); median of $ROUNDS round(s), $LOAD s of feeding per fan-out."
    echo "Load averages before/after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg); the run took ${ELAPSED} s."
    echo
    echo "| variant | clients | deliveries per server CPU-s (rounds) | server ns per delivery | wire B per delivery | compressed | lost, dropped, inflate failures | server / loadgen CPU |"
    echo "|---|---|---|---|---|---|---|---|"
    for v in plain deflate plain100 deflate100 plain5000 deflate5000 peer; do
        case $v in plain | deflate | peer) n=1000 ;; *) n=${v#plain} n=${n#deflate} ;; esac
        echo "| $v | $n | $(M fan $v per_server_cpu_s) ($(rounds fan $v per_server_cpu_s)) | $(M fan $v cpu_ns_per_delivery) | $(M fan $v wire_per_delivery) | $(M fan $v compressed_share) | $(M fan $v lost), $(M fan $v dropped), $(M fan $v inflate_failed) | $(pct "$(M fan $v server_cpu_pct)")% / $(pct "$(M fan $v loadgen_cpu_pct)")% |"
    done
    echo
    echo "- deflate ÷ plain, deliveries per server CPU-s (rounds' ratios): $(M ratio deflate per_cpu_vs_plain) ($(rounds ratio deflate per_cpu_vs_plain)); goal ≥ 0.8"
    echo "- deflate ÷ plain, wire bytes per delivery: $(M ratio deflate wire_vs_plain) ($(rounds ratio deflate wire_vs_plain)); goal ≤ 0.333"
    echo "- wscast ÷ py-broadcast, deliveries per server CPU-s: $(M ratio peer wscast_vs_peer_per_cpu) ($(rounds ratio peer wscast_vs_peer_per_cpu)); goal ≥ 20; the peer's wire ÷ plain: $(M ratio peer wire_vs_plain)"
    echo "- idle, $IDLE_N connections, RSS growth per connection: plain $(M idle idle-plain bytes_per_conn) B ($(rounds idle idle-plain bytes_per_conn)), deflate negotiated $(M idle idle-deflate bytes_per_conn) B ($(rounds idle idle-deflate bytes_per_conn)); goal ≤ 256 B"
    echo "- decompression bombs, 10 at once, each a $(M bomb wscast wire_bytes)-byte frame inflating to 1 GiB, --max-message 16 MiB: $(M bomb wscast closed_1009) of 10 closed with 1009; server peak RSS growth $(M bomb wscast peak_growth_kb) kB ($(rounds bomb wscast peak_growth_kb)) against the 16,384 kB limit"
    echo "- deflate library, $(field "$COST" lines) lines of $(field "$COST" line_bytes) B on average: zlib-rs $(field "$COST" zlib_rs_us_per_kib) µs/KiB, ratio $(field "$COST" zlib_rs_ratio); miniz_oxide $(field "$COST" miniz_oxide_us_per_kib) µs/KiB, ratio $(field "$COST" miniz_oxide_ratio)"
    if [[ ${#FAILED[@]} -gt 0 ]]; then
        echo
        echo "Problems:"
        printf -- '- %s\n' "${FAILED[@]}"
    fi
} | tee "$OUT/compression.md"
