#!/usr/bin/env bash
# wscast's performance suite: builds wscast, the load generator and the peer servers in
# release mode, runs every scenario against wscast and the peers side by side, and
# prints a Markdown table of medians, ratios and verdicts (also written to
# bench/results.md).
#
#   bench/run.sh            full run: 3 runs per scenario and server, 10 s loads (~12 min)
#   bench/run.sh --quick    smoke test: 1 run, 2 s loads, 2,000 idle connections (~2 min)
#   bench/run.sh --runs 5   more runs per scenario (the median is reported)
#   bench/run.sh --wscast BIN --label NAME
#                           measure another wscast binary (say, a build of an earlier
#                           commit, for a before/after comparison); the table then goes
#                           to bench/out/results.md only, labelled NAME
#
# The server is pinned to CPU 0 and the load generator (and the stdin feeder) to CPU 1
# with taskset. Runs of the different servers are interleaved (wscast, peer, peer,
# wscast, ...) so that noise from the rest of the machine falls on all of them alike.
# The echo bars are also measured in pairs: wscast and one peer serving at the same
# time on the server CPU, each with its own load generator, so that the machine's noise
# falls on both within the same seconds (runs one after the other differed by ±10%
# here; pairs by ±1.5%).
# Everything talks to 127.0.0.1 only; every process started here is killed on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/bench}
BIN=$CARGO_TARGET_DIR/release
OUT=${BENCH_OUT:-$HERE/out}
RESULTS=$HERE/results.md

RUNS=3 LOAD=10 IDLE_N=10000 FAN_N=1000 PACED_RATE=50
# SO_RCVBUF of each fan-out client. 1,000 clients on one machine share its TCP memory
# (net.ipv4.tcp_mem); left to autotune (up to tcp_rmem's maximum, 32 MiB here) their
# receive buffers held ~1 GB between them, the machine went into TCP memory pressure,
# and the kernel stalled random sockets while the rest ran on: a test-rig artefact that
# clients on machines of their own never see. A fixed 128 KiB keeps the rig out of it.
FAN_RCVBUF=131072
QUICK=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --quick) QUICK=1 RUNS=1 LOAD=2 IDLE_N=2000 ;;
    --runs) RUNS=$2; shift ;;
    --no-build) NO_BUILD=1 ;;
    --wscast) WSCAST_BIN=$2; shift ;;
    --label) LABEL=$2; shift ;;
    -h | --help) sed -n '2,20p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

SERVER_CPU=0 LOAD_CPU=1
if [[ $(nproc) -lt 2 ]]; then
    echo "warning: fewer than 2 CPUs; server and load generator share one" >&2
    LOAD_CPU=0
fi

# --- helpers (processes, servers, load generator, /proc, records): bench/lib.sh ----
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"

# --- build -------------------------------------------------------------------------
if [[ -z ${NO_BUILD:-} ]]; then
    log "building wscast, loadgen and the peers (release) into $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release --quiet --bin wscast)
    (cd "$HERE/loadgen" && cargo build --release --quiet)
    (cd "$HERE/peers" && cargo build --release --quiet)
fi
for b in wscast loadgen tt-echo fws-echo tt-broadcast; do
    [[ -x $BIN/$b ]] || { echo "missing $BIN/$b" >&2; exit 1; }
done

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ $(ulimit -n) -lt $((IDLE_N + 100)) ]]; then
    echo "open-files limit $(ulimit -n) is too low for $IDLE_N connections" >&2
    exit 1
fi
read -r PORT_LO PORT_HI </proc/sys/net/ipv4/ip_local_port_range
if ((PORT_HI - PORT_LO < IDLE_N + 2000)); then
    echo "ephemeral port range $PORT_LO-$PORT_HI is too small for $IDLE_N connections" >&2
    exit 1
fi

mkdir -p "$OUT"
RAW=$OUT/raw.tsv
: >"$RAW"
FIFO=$(mktemp -u /tmp/wscast-bench.XXXXXX)

# --- scenarios ---------------------------------------------------------------------

# Bar 1: server RSS growth per idle open connection.
scenario_idle() {
    local name=$1 before after line
    start_server "$name" echo
    sleep 0.3
    before=$(rss_kb "$SPID" VmRSS)
    loadgen_bg "$OUT/idle.out" idle --url "$URL" -n "$IDLE_N" --hold 600
    wait_ready "$OUT/idle.out"
    sleep 1
    after=$(rss_kb "$SPID" VmRSS)
    kill "$LPID"; wait "$LPID" 2>/dev/null || true
    line=$(grep '^ready' "$OUT/idle.out")
    local open=${line#ready }
    stop_server
    local per=$(((after - before) * 1024 / open))
    record idle "$name" bytes_per_conn "$per"
    log "idle  $name: $open connections, RSS $before -> $after kB = $per B/connection"
}

scenario_encode_once() {
    local name=$1
    QUIET=30 run_fanout "$name" encode_once --count 1 --size 1048576 --duration 30
    local r=$FAN_RESULT
    record encode_once "$name" hwm_growth_mib "$(awk -v k="$FAN_HWM_GROWTH_KB" 'BEGIN {printf "%.2f", k / 1024}')"
    record encode_once "$name" lost "$(field "$r" lost)"
    log "once  $name: VmHWM +$FAN_HWM_GROWTH_KB kB for 1 MiB x $FAN_N clients, lost $(field "$r" lost), max_len $(field "$r" max_len)"
}

scenario_fanout_max() {
    local name=$1
    run_fanout "$name" fanout --rate max --duration "$LOAD" --size 64
    local r=$FAN_RESULT
    record fanout "$name" rate "$(field "$r" rate)"
    record fanout "$name" per_cpu "$(field "$r" per_server_cpu_s)"
    record fanout "$name" lost "$(field "$r" lost)"
    record fanout "$name" lines "$(field "$r" lines)"
    record fanout "$name" dropped "$(field "$r" dropped)"
    record fanout "$name" lost_pct "$(awk -v l="$(field "$r" lost)" -v n="$(field "$r" lines)" -v c="$(field "$r" clients)" 'BEGIN { if (n * c > 0) printf "%.2f\n", 100 * l / (n * c); else print 0 }')"
    record fanout "$name" loadgen_pct "$(pct "$(field "$r" loadgen_cpu_pct)")"
    record fanout "$name" server_pct "$(pct "$(field "$r" server_cpu_pct)")"
    record fanout "$name" p99_us "$(field "$r" p99_us)"
    log "fan   $name: $(field "$r" lines) lines, $(field "$r" rate) deliveries/s, $(field "$r" per_server_cpu_s)/server-CPU-s, lost $(field "$r" lost), $(field "$r" dropped) clients dropped, server $(field "$r" server_cpu_pct)% loadgen $(field "$r" loadgen_cpu_pct)% CPU"
}

scenario_fanout_paced() {
    local name=$1
    run_fanout "$name" paced --rate "$PACED_RATE" --duration "$LOAD" --size 64
    local r=$FAN_RESULT
    record paced "$name" p50_us "$(field "$r" p50_us)"
    record paced "$name" p99_us "$(field "$r" p99_us)"
    record paced "$name" max_us "$(field "$r" max_us)"
    record paced "$name" lost "$(field "$r" lost)"
    log "paced $name: p50 $(field "$r" p50_us) us, p99 $(field "$r" p99_us) us, max $(field "$r" max_us) us, lost $(field "$r" lost)"
}

# echo NAME SCENARIO CONNECTIONS SIZE
scenario_echo() {
    local name=$1 scenario=$2 c=$3 size=$4 r
    start_server "$name" echo
    r=$(taskset -c "$LOAD_CPU" "$BIN/loadgen" echo --url "$URL" -c "$c" --size "$size" \
        --duration "$LOAD" --server-pid "$SPID" 2>"$OUT/echo.err" | grep '^RESULT')
    stop_server
    record "$scenario" "$name" rate "$(field "$r" rate)"
    record "$scenario" "$name" per_cpu "$(field "$r" per_server_cpu_s)"
    record "$scenario" "$name" loadgen_pct "$(pct "$(field "$r" loadgen_cpu_pct)")"
    record "$scenario" "$name" server_pct "$(pct "$(field "$r" server_cpu_pct)")"
    record "$scenario" "$name" p99_us "$(field "$r" p99_us)"
    log "$scenario $name: $(field "$r" rate) msg/s, $(field "$r" per_server_cpu_s)/server-CPU-s, server $(field "$r" server_cpu_pct)% loadgen $(field "$r" loadgen_cpu_pct)%, wrong $(field "$r" wrong)"
}

# echo_pair PEER SCENARIO CONNECTIONS SIZE: wscast and PEER side by side on SERVER_CPU,
# one load generator each on LOAD_CPU; records wscast ÷ PEER per server CPU-second.
scenario_echo_pair() {
    local peer=$1 scenario=$2 c=$3 size=$4 wpid wurl ppid purl l1 l2 rw rp
    start_server wscast echo
    wpid=$SPID wurl=$URL
    start_server "$peer" echo
    ppid=$SPID purl=$URL
    taskset -c "$LOAD_CPU" "$BIN/loadgen" echo --url "$wurl" -c "$c" --size "$size" \
        --duration "$LOAD" --server-pid "$wpid" >"$OUT/pair.wscast" 2>"$OUT/pair.wscast.err" &
    l1=$!
    taskset -c "$LOAD_CPU" "$BIN/loadgen" echo --url "$purl" -c "$c" --size "$size" \
        --duration "$LOAD" --server-pid "$ppid" >"$OUT/pair.peer" 2>"$OUT/pair.peer.err" &
    l2=$!
    PIDS+=("$l1" "$l2")
    wait "$l1" "$l2" || true
    kill "$wpid" "$ppid" 2>/dev/null || true
    wait "$wpid" "$ppid" 2>/dev/null || true
    SPID=
    rw=$(field "$(grep '^RESULT' "$OUT/pair.wscast")" per_server_cpu_s)
    rp=$(field "$(grep '^RESULT' "$OUT/pair.peer")" per_server_cpu_s)
    record "pair_$scenario" "$peer" ratio "$(awk -v a="$rw" -v b="$rp" 'BEGIN { if (a != "" && b > 0) printf "%.4f\n", a / b }')"
    log "pair $scenario wscast $rw vs $peer $rp per server-CPU-s"
}

scenario_handshake() {
    local name=$1 r
    start_server "$name" echo
    r=$(taskset -c "$LOAD_CPU" "$BIN/loadgen" handshake --url "$URL" -c 32 \
        --duration "$LOAD" --server-pid "$SPID" 2>"$OUT/hs.err" | grep '^RESULT')
    stop_server
    record handshake "$name" rate "$(field "$r" rate)"
    record handshake "$name" per_cpu "$(field "$r" per_server_cpu_s)"
    record handshake "$name" loadgen_pct "$(pct "$(field "$r" loadgen_cpu_pct)")"
    record handshake "$name" server_pct "$(pct "$(field "$r" server_cpu_pct)")"
    log "hs    $name: $(field "$r" rate)/s, $(field "$r" per_server_cpu_s)/server-CPU-s, failed $(field "$r" failed), server $(field "$r" server_cpu_pct)% loadgen $(field "$r" loadgen_cpu_pct)%"
}

STARTED=$(date +%s)
ECHO_SERVERS=(wscast tt-echo fws-echo)
BCAST_SERVERS=(wscast tt-broadcast)
for run in $(seq "$RUNS"); do
    log "=== run $run of $RUNS"
    for s in "${ECHO_SERVERS[@]}"; do scenario_idle "$s"; done
    for s in "${BCAST_SERVERS[@]}"; do scenario_encode_once "$s"; done
    for s in "${BCAST_SERVERS[@]}"; do scenario_fanout_max "$s"; done
    for s in "${BCAST_SERVERS[@]}"; do scenario_fanout_paced "$s"; done
    for s in "${ECHO_SERVERS[@]}"; do scenario_echo "$s" echo_small 100 20; done
    for s in "${ECHO_SERVERS[@]}"; do scenario_echo "$s" echo_large 1 16384; done
    for p in tt-echo fws-echo; do
        scenario_echo_pair "$p" echo_small 100 20
        scenario_echo_pair "$p" echo_large 1 16384
    done
    for s in "${ECHO_SERVERS[@]}"; do scenario_handshake "$s"; done
done
ELAPSED=$(($(date +%s) - STARTED))

# --- report ------------------------------------------------------------------------

# fmt N: a readable number (k/M suffix above 10,000).
fmt() {
    awk -v n="$1" 'BEGIN {
        if (n == "-" || n == "") { print "-"; exit }
        if (n >= 1e6) printf "%.2f M\n", n / 1e6
        else if (n >= 1e4) printf "%.0f k\n", n / 1e3
        else if (n == int(n)) printf "%d\n", n
        else printf "%.2f\n", n }'
}

# ratio A B: A / B, 2 decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f×\n", a / b }'; }

# ratio3 A B: A / B, 3 decimals (for ratios near 1).
ratio3() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.3f×\n", a / b }'; }

# verdict EXPR: "met" / "not met" for an awk condition over a and b.
check() { awk -v a="$1" -v b="$2" "BEGIN { if (a == \"-\" || b == \"-\") print \"?\"; else if ($3) print \"**met**\"; else print \"not met\" }"; }

M() { median "$@"; }

idle_w=$(M idle wscast bytes_per_conn) idle_tt=$(M idle tt-echo bytes_per_conn) idle_fws=$(M idle fws-echo bytes_per_conn)
once_w=$(M encode_once wscast hwm_growth_mib) once_tb=$(M encode_once tt-broadcast hwm_growth_mib)
once_lost_w=$(M encode_once wscast lost) once_lost_tb=$(M encode_once tt-broadcast lost)
fan_w=$(M fanout wscast rate) fan_tb=$(M fanout tt-broadcast rate)
fanc_w=$(M fanout wscast per_cpu) fanc_tb=$(M fanout tt-broadcast per_cpu)
lost_w=$(M fanout wscast lost) lost_tb=$(M fanout tt-broadcast lost)
lines_w=$(M fanout wscast lines) lines_tb=$(M fanout tt-broadcast lines)
lostp_w=$(M fanout wscast lost_pct) lostp_tb=$(M fanout tt-broadcast lost_pct)
drop_w=$(M fanout wscast dropped) drop_tb=$(M fanout tt-broadcast dropped)
fanlg_w=$(M fanout wscast loadgen_pct) fanlg_tb=$(M fanout tt-broadcast loadgen_pct)
fansv_w=$(M fanout wscast server_pct) fansv_tb=$(M fanout tt-broadcast server_pct)
p99_w=$(M paced wscast p99_us) p99_tb=$(M paced tt-broadcast p99_us)
p50_w=$(M paced wscast p50_us) p50_tb=$(M paced tt-broadcast p50_us)
plost_w=$(M paced wscast lost) plost_tb=$(M paced tt-broadcast lost)
ms() { awk -v u="$1" 'BEGIN { if (u == "-") print "-"; else printf "%.2f ms\n", u / 1000 }'; }

{
    echo "## wscast performance: $(date -u +'%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r), $(free -g | awk '/Mem:/ {print $2}') GiB."
    echo "wscast ${LABEL:-$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')}; rustc $(rustc --version | cut -d' ' -f2)."
    echo "Server pinned to CPU $SERVER_CPU, load generator and feeder to CPU $LOAD_CPU; median of $RUNS run(s),"
    echo "${LOAD} s per load, $IDLE_N idle connections, $FAN_N fan-out clients; the whole run took ${ELAPSED} s."
    [[ $QUICK == 1 ]] && echo "**Quick run (--quick): smoke-test numbers, not the bars' conditions.**"
    echo "Load averages before/after: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine shows up as noise;"
    echo "the per-server-CPU-second columns are the ones that noise affects least)."
    echo
    echo "| # | scenario | metric | wscast | peer(s) | wscast ÷ peer | bar | verdict |"
    echo "|---|---|---|---|---|---|---|---|"
    echo "| 1 | idle, $IDLE_N connections | RSS growth per connection | $(fmt "$idle_w") B | tt-echo $(fmt "$idle_tt") B, fws-echo $(fmt "$idle_fws") B | $(ratio "$idle_w" "$idle_fws") of fws | ≤ 256 B | $(check "$idle_w" 0 'a <= 256') |"
    echo "| 2 | encode once: 1 MiB line → $FAN_N clients | peak RSS (VmHWM) growth | $once_w MiB (lost $once_lost_w) | tt-broadcast $once_tb MiB (lost $once_lost_tb) | $(ratio "$once_w" "$once_tb") | < 4 MiB | $(check "$once_w" 0 'a < 4') |"
    echo "| 3 | fan-out, 64 B lines at max rate, $FAN_N clients | deliveries/s | $(fmt "$fan_w") | tt-broadcast $(fmt "$fan_tb") | $(ratio "$fan_w" "$fan_tb") | ≥ 30× | $(check "$fan_w" "$fan_tb" 'a >= 30 * b') |"
    echo "| 3 | 〃 | deliveries per server CPU-second | $(fmt "$fanc_w") | tt-broadcast $(fmt "$fanc_tb") | $(ratio "$fanc_w" "$fanc_tb") | ≥ 30× | $(check "$fanc_w" "$fanc_tb" 'a >= 30 * b') |"
    echo "| 3 | 〃 | deliveries lost (lines × clients not received); clients dropped | ${lostp_w}% (lines fed: $(fmt "$lines_w")); $drop_w dropped | ${lostp_tb}% (lines fed: $(fmt "$lines_tb")); $drop_tb dropped | | 0 | $(check "$lost_w" 0 'a == 0') |"
    echo "| 3 | 〃 | CPU: server / load generator | ${fansv_w}% / ${fanlg_w}% | ${fansv_tb}% / ${fanlg_tb}% | | | |"
    echo "| 3 | fan-out paced at $PACED_RATE lines/s | stdin → client latency p99 (p50) | $(ms "$p99_w") ($(ms "$p50_w")), lost $plost_w | $(ms "$p99_tb") ($(ms "$p50_tb")), lost $plost_tb | $(ratio "$p99_w" "$p99_tb") | ≤ 5 ms | $(check "$p99_w" 0 'a <= 5000') |"
    for sc in echo_small echo_large; do
        if [[ $sc == echo_small ]]; then label="echo, 100 connections × 20 B"; else label="echo, 1 connection × 16 KiB"; fi
        w=$(M $sc wscast per_cpu) tt=$(M $sc tt-echo per_cpu) fw=$(M $sc fws-echo per_cpu)
        wr=$(M $sc wscast rate) ttr=$(M $sc tt-echo rate) fwr=$(M $sc fws-echo rate)
        ptt=$(M pair_$sc tt-echo ratio) pfw=$(M pair_$sc fws-echo ratio)
        echo "| 4 | $label | messages per server CPU-second, side by side (wscast and the peer at the same time on one CPU; median of $RUNS pairs) | | | $(ratio3 "$ptt" 1) tt, $(ratio3 "$pfw" 1) fws | ≥ 1.4× tt, ≥ 1.0× fws | $(check "$ptt" 1 'a >= 1.4') tt, $(check "$pfw" 1 'a >= 1.0') fws |"
        echo "| 4 | 〃 | messages per server CPU-second, one server at a time | $(fmt "$w") | tt-echo $(fmt "$tt"), fws-echo $(fmt "$fw") | $(ratio "$w" "$tt") tt, $(ratio "$w" "$fw") fws | | |"
        echo "| 4 | 〃 | messages/s (server % / loadgen % CPU) | $(fmt "$wr") ($(M $sc wscast server_pct)% / $(M $sc wscast loadgen_pct)%) | tt-echo $(fmt "$ttr") ($(M $sc tt-echo server_pct)% / $(M $sc tt-echo loadgen_pct)%), fws-echo $(fmt "$fwr") ($(M $sc fws-echo server_pct)% / $(M $sc fws-echo loadgen_pct)%) | $(ratio "$wr" "$ttr") tt, $(ratio "$wr" "$fwr") fws | | |"
    done
    w=$(M handshake wscast rate) tt=$(M handshake tt-echo rate) fw=$(M handshake fws-echo rate)
    best=$(awk -v a="$tt" -v b="$fw" 'BEGIN {print (a > b) ? a : b}')
    wc=$(M handshake wscast per_cpu) ttc=$(M handshake tt-echo per_cpu) fwc=$(M handshake fws-echo per_cpu)
    bestc=$(awk -v a="$ttc" -v b="$fwc" 'BEGIN {print (a > b) ? a : b}')
    echo "| 5 | handshakes (connect, upgrade, close), 32 at a time | per second (server % / loadgen % CPU) | $(fmt "$w") ($(M handshake wscast server_pct)% / $(M handshake wscast loadgen_pct)%) | tt-echo $(fmt "$tt") ($(M handshake tt-echo server_pct)% / $(M handshake tt-echo loadgen_pct)%), fws-echo $(fmt "$fw") ($(M handshake fws-echo server_pct)% / $(M handshake fws-echo loadgen_pct)%) | $(ratio "$w" "$best") best | ≥ 1.0× best | $(check "$w" "$best" 'a >= b') |"
    echo "| 5 | 〃 | per server CPU-second | $(fmt "$wc") | tt-echo $(fmt "$ttc"), fws-echo $(fmt "$fwc") | $(ratio "$wc" "$bestc") best | ≥ 1.0× best | $(check "$wc" "$bestc" 'a >= b') |"
    echo
    echo "Ratios are wscast ÷ peer, each the ratio of medians (side-by-side rows: the median of each pair's ratio;"
    echo "they carry the echo verdicts, being the ones this machine's noise moves least). \"server % / loadgen %\" is each process's CPU"
    echo "share over the measured window: where the load generator nears 100%, or neither side is"
    echo "near 100% (a closed loop waiting on itself, or other work on the machine), raw rates say more"
    echo "about the set-up than the server, and the per-server-CPU-second rows are the comparison."
    echo "Raw numbers of every run: \`bench/out/raw.tsv\` (not committed). Reproduce: \`bench/run.sh\`."
} | tee "$OUT/results.md"

if [[ $QUICK == 0 ]]; then
    if [[ -z ${WSCAST_BIN:-} ]]; then
        cp "$OUT/results.md" "$RESULTS"
        log "table written to $RESULTS"
    else
        log "table written to $OUT/results.md ($WSCAST_BIN)"
    fi
fi
