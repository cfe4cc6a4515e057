#!/usr/bin/env bash
# Helpers shared by bench/run.sh and bench/resume.sh (sourced, not run): processes and
# their cleanup, the servers, the load generator, /proc readings, RESULT fields, raw
# records and their medians. The sourcing script sets HERE, BIN, OUT, RAW, FIFO,
# SERVER_CPU, LOAD_CPU (and, for run_fanout, FAN_N, FAN_RCVBUF, LOAD) before calling them.
# Optional hooks: WSCAST_FLAGS (an array of extra wscast flags, for start_server) and
# FANOUT_FLAGS (extra `loadgen fanout` flags, for run_fanout), FANOUT_SETTLE (seconds
# between the clients being open and the feeder starting; default 0.5), FANOUT_DURATION
# (the fan-out's time limit after `ready`; default LOAD × 3 + 30 s), PEER_FLAGS (extra
# flags for a Rust peer, for start_server) and SCHEME (the URL's scheme; default ws,
# wss for bench/tls.sh).

# --- processes, cleanup -------------------------------------------------------------
PIDS=()
FIFO=
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    sleep 0.2
    for pid in "${PIDS[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
    exec 3>&-
    [[ -n $FIFO ]] && rm -f "$FIFO"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

# new_fifo: a fresh fifo for a broadcast server's stdin, held open here for writing so
# the server never sees EOF between feeders and opening it for reading never blocks.
new_fifo() {
    exec 3>&-
    rm -f "$FIFO"
    mkfifo "$FIFO"
    exec 3<>"$FIFO"
}

# --- servers -----------------------------------------------------------------------
SPID= URL=

free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 10000))
        (exec 4<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

# start_server NAME MODE: starts NAME pinned to SERVER_CPU, its stdin the fifo (MODE
# broadcast) or /dev/null; sets SPID and URL once it accepts connections.
start_server() {
    local name=$1 mode=$2 port cmd stdin=/dev/null
    port=$(free_port)
    case $name in
    wscast)
        cmd=("${WSCAST_BIN:-$BIN/wscast}" --listen "127.0.0.1:$port" --mode "$mode" --max-connections 50000
            --no-commands --log-level warn ${WSCAST_FLAGS[@]+"${WSCAST_FLAGS[@]}"})
        ;;
    # The Python peer (bench/compression.sh sets PY_VENV).
    py-broadcast) cmd=("$PY_VENV/bin/python" "$HERE/peers/py-broadcast/broadcast.py" --listen "127.0.0.1:$port") ;;
    *) cmd=("$BIN/$name" --listen "127.0.0.1:$port" ${PEER_FLAGS[@]+"${PEER_FLAGS[@]}"}) ;;
    esac
    if [[ $mode == broadcast ]]; then
        new_fifo
        stdin=$FIFO
    fi
    taskset -c "$SERVER_CPU" "${cmd[@]}" <"$stdin" >/dev/null 2>"$OUT/$name.err" &
    SPID=$!
    PIDS+=("$SPID")
    URL=${SCHEME:-ws}://127.0.0.1:$port/ws
    local i
    for i in $(seq 100); do
        (exec 4<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "$name did not start listening on $port; see $OUT/$name.err" >&2
    exit 1
}

stop_server() {
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    SPID=
}

rss_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# field LINE KEY: the value of KEY=value in a RESULT line.
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

# pct N: a percentage without decimals.
pct() { awk -v n="$1" 'BEGIN { if (n == "") print ""; else printf "%.0f\n", n }'; }

# record SCENARIO SERVER METRIC VALUE
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RAW"; }

# loadgen_bg OUTFILE ARGS...: starts the load generator pinned to LOAD_CPU.
LPID=
loadgen_bg() {
    local out=$1
    shift
    taskset -c "$LOAD_CPU" "$BIN/loadgen" "$@" >"$out" 2>"$out.err" &
    LPID=$!
    PIDS+=("$LPID")
}

wait_ready() {
    local i
    for i in $(seq 1200); do
        grep -q '^ready' "$1" 2>/dev/null && return 0
        kill -0 "$LPID" 2>/dev/null || { cat "$1.err" >&2; return 1; }
        sleep 0.1
    done
    return 1
}

# fanout NAME SCENARIO FEEDER-ARGS...: 1,000 clients on a broadcast server; the feeder
# writes into the server's stdin once they are all open.
run_fanout() {
    local name=$1 scenario=$2
    shift 2
    start_server "$name" broadcast
    FAN_RESULT=
    loadgen_bg "$OUT/fan.out" fanout --url "$URL" -n "$FAN_N" --server-pid "$SPID" \
        --duration "${FANOUT_DURATION:-$((LOAD * 3 + 30))}" --quiet "${QUIET:-5}" --rcvbuf "$FAN_RCVBUF" \
        ${FANOUT_FLAGS[@]+"${FANOUT_FLAGS[@]}"}
    wait_ready "$OUT/fan.out"
    sleep "${FANOUT_SETTLE:-0.5}"
    local hwm0 rss0
    hwm0=$(rss_kb "$SPID" VmHWM)
    rss0=$(rss_kb "$SPID" VmRSS)
    taskset -c "$LOAD_CPU" "$BIN/loadgen" feed "$@" >"$FIFO" 2>"$OUT/feed.err"
    wait "$LPID" || true
    local hwm1 result
    hwm1=$(rss_kb "$SPID" VmHWM)
    stop_server
    result=$(grep '^RESULT' "$OUT/fan.out" || true)
    if [[ -z $result ]]; then
        log "fanout $name: no result"; cat "$OUT/fan.out.err" >&2
        return
    fi
    FAN_RESULT=$result
    FAN_HWM_GROWTH_KB=$((hwm1 - hwm0))
    FAN_RSS0=$rss0
}

# median SCENARIO SERVER METRIC
median() {
    awk -F'\t' -v s="$1" -v v="$2" -v m="$3" '$1 == s && $2 == v && $3 == m && $4 != "" {print $4}' "$RAW" |
        sort -g | awk '{a[NR] = $1} END {
            if (NR == 0) print "-"
            else if (NR % 2) print a[(NR + 1) / 2]
            else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
