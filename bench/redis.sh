#!/usr/bin/env bash
# Redis backplane (issue 17), the performance part: what `--redis` costs one node's
# fan-out and latency, whether two nodes fed from one stdin stay lossless and in order,
# and how many Redis commands a broadcast line costs.
#
#   bench/redis.sh              3 rounds, 10 s fan-out loads, 50,000 lines for two nodes (~5 min)
#   bench/redis.sh --quick      smoke test: 1 round, 2 s loads, 10,000 lines (~40 s)
#   bench/redis.sh --rounds 5   more rounds (medians are reported)
#   bench/redis.sh --load 5     one-node max-rate fan-out: 10,000 lines × this (~this many s)
#   bench/redis.sh --paced 10   seconds per paced load (lines: 50 × this)
#   bench/redis.sh --lines N    lines fed to the two-node cluster per run
#   bench/redis.sh --no-build   use the binaries already in $CARGO_TARGET_DIR/release
#   bench/redis.sh --wscast BIN measure another wscast binary (a build of a commit)
#
# A Redis of its own: Debian's `redis-server` on a free 127.0.0.1 port, `--save ''
# --appendonly no`, pinned to the load CPU (it is a cost of the cluster, reported apart:
# its CPU time from /proc/PID/task/*/schedstat, its commands from INFO commandstats after
# CONFIG RESETSTAT). Before every load: FLUSHALL, CONFIG RESETSTAT.
#
# 1. Fan-out, plain vs redis: bench/run.sh's "fan-out, max rate" (1,000 clients, the
#    feeder writing 64-byte lines into stdin as fast as the pipe takes them), except that
#    the feeder stops after a fixed number of lines (10,000 × --load: 100,000, ~8 s of
#    deliveries) rather than after --load seconds: a --redis node reads stdin faster
#    than it delivers (lines wait in the stream), so a timed feed would hand the
#    variants different amounts of work. Against three servers, their order rotating
#    from round to round:
#      plain      wscast --history 100000
#      redis      wscast --history 100000 --redis ...   (stream cap 100,000)
#      redis_cap  wscast --redis ...                    (default history, so the default
#                                                        stream cap: 1,024 up to c3e8e0e,
#                                                        10,000 since 5c67c1a)
#    Deliveries per server CPU-second, each round's redis ÷ plain (goal ≥ 0.8×), loss,
#    and Redis's CPU per line. Clients check order strictly (`loadgen fanout --order`).
#    redis_cap shows what the default cap does at max rate (up to c3e8e0e a node outran
#    its own reader and Redis trimmed lines it had not read); plain and redis share --history so
#    that --redis is the only difference (the in-memory history stays capped at 1 MiB).
#    With a cap of 100,000 and 100,000 lines nothing can be trimmed: that run shows the
#    cost of the backplane, not that a cap of 100,000 suffices for any burst. How far
#    the node reads ahead of its clients shows in the feeder's time against the time
#    the clients take to receive everything.
# 2. Latency, plain vs redis: the feeder pacing lines at 50/s for --paced s (bench/
#    run.sh's "paced"), to 1,000 clients and to 1 client: stdin → client latency
#    p50/p99/max from the time stamp in each line (same host, same clock), and
#    redis − plain (goal: p99 + ≤ 1 ms). Default history.
# 3. Two nodes, 1,000 clients each, both on the server CPU, fed --lines lines at max rate
#    into node A's stdin only: every client of both nodes must get every line exactly
#    once in order (`--order`: each line's number one more than the previous one's),
#    throughput, and node B's lag behind A (the wall-clock time of each node's last
#    delivery, and its latency percentiles). Run with wscast's default --history (the
#    default stream cap, `MAXLEN ~`) and with --history 100000, alternated.
# 4. Redis load per line: XADD, MULTI, EXEC, XREAD calls per line and per node, from the
#    loads of 1-3, with usec_per_call.
#
# Server(s) on CPU 0, load generator, feeder and Redis on CPU 1 (taskset), like
# bench/run.sh, whose helpers it shares (bench/lib.sh). 127.0.0.1 only; every process it
# starts is killed on exit. Results: bench/out/redis.md, raw numbers bench/out/redis.tsv.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/bench}
BIN=$CARGO_TARGET_DIR/release
OUT=${BENCH_OUT:-$HERE/out}

ROUNDS=3 LOAD=10 FAN_N=1000 QUICK=0 PACED_RATE=50 PACED=6
TWO_LINES=50000 BIG_HISTORY=100000
# Each client's SO_RCVBUF, as in bench/run.sh.
FAN_RCVBUF=131072
while [[ $# -gt 0 ]]; do
    case $1 in
    --quick) QUICK=1 ROUNDS=1 LOAD=2 PACED=2 TWO_LINES=10000 ;;
    --paced) PACED=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --load) LOAD=$2; shift ;;
    --lines) TWO_LINES=$2; shift ;;
    --no-build) NO_BUILD=1 ;;
    --wscast) WSCAST_BIN=$2; shift ;;
    -h | --help) sed -n '2,48p' "${BASH_SOURCE[0]}"; exit 0 ;;
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
WSCAST=${WSCAST_BIN:-$BIN/wscast}

command -v redis-server >/dev/null && command -v redis-cli >/dev/null || {
    echo "redis-server and redis-cli are needed (Debian: apt-get install redis-server)" >&2
    exit 1
}
if [[ -z ${NO_BUILD:-} ]]; then
    log "building wscast and loadgen (release) into $CARGO_TARGET_DIR"
    [[ -z ${WSCAST_BIN:-} ]] && (cd "$ROOT" && cargo build --release --quiet --bin wscast)
    (cd "$HERE/loadgen" && cargo build --release --quiet)
fi
for b in "$WSCAST" "$BIN/loadgen"; do
    [[ -x $b ]] || { echo "missing $b" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ $(ulimit -n) -lt $((2 * FAN_N + 100)) ]]; then
    echo "open-files limit $(ulimit -n) is too low" >&2
    exit 1
fi

mkdir -p "$OUT"
RAW=$OUT/redis.tsv
: >"$RAW"
FIFO=$(mktemp -u /tmp/wscast-redis.XXXXXX)
RDIR=$(mktemp -d /tmp/wscast-redis-data.XXXXXX)
trap 'cleanup; rm -rf "$RDIR"' EXIT
WSCAST_FLAGS=() FANOUT_FLAGS=()
FAILED=()

# --- Redis ---------------------------------------------------------------------------
RPORT= RPID=
start_redis() {
    RPORT=$(free_port)
    taskset -c "$LOAD_CPU" redis-server --bind 127.0.0.1 --port "$RPORT" --save '' --appendonly no \
        --dir "$RDIR" --logfile "$OUT/redis-server.log" --daemonize no >/dev/null 2>&1 &
    RPID=$!
    PIDS+=("$RPID")
    local i
    for i in $(seq 100); do
        [[ $(redis-cli -p "$RPORT" PING 2>/dev/null) == PONG ]] && return 0
        sleep 0.05
    done
    echo "redis-server did not start on $RPORT; see $OUT/redis-server.log" >&2
    exit 1
}
rcli() { redis-cli -p "$RPORT" "$@"; }

# redis_reset: an empty Redis with zeroed command statistics; notes its CPU time.
redis_reset() {
    rcli FLUSHALL >/dev/null
    rcli CONFIG RESETSTAT >/dev/null
    R_CPU0=$(cpu_ns "$RPID")
}

# cpu_ns PID: nanoseconds its threads have run (/proc/PID/task/*/schedstat).
cpu_ns() {
    local ns=0 t a
    for t in /proc/"$1"/task/*/schedstat; do
        read -r a _ <"$t" || continue
        ns=$((ns + a))
    done
    echo "$ns"
}

# redis_after SCENARIO VARIANT LINES NODES: records Redis's CPU and commands since
# redis_reset, per line (LINES: the lines broadcast, the closing END line included).
redis_after() {
    local s=$1 v=$2 lines=$3 nodes=$4 cpu stats c calls usec
    cpu=$(($(cpu_ns "$RPID") - R_CPU0))
    stats=$(rcli INFO commandstats | tr -d '\r')
    record "$s" "$v" redis_cpu_ms "$(awk -v n="$cpu" 'BEGIN { printf "%.1f\n", n / 1e6 }')"
    record "$s" "$v" redis_us_per_line "$(awk -v n="$cpu" -v l="$lines" 'BEGIN { if (l > 0) printf "%.3f\n", n / 1e3 / l }')"
    for c in xadd xread multi exec; do
        calls=$(sed -n "s/^cmdstat_$c:calls=\([0-9]*\),.*/\1/p" <<<"$stats")
        usec=$(sed -n "s/^cmdstat_$c:.*usec_per_call=\([0-9.]*\),.*/\1/p" <<<"$stats")
        calls=${calls:-0}
        record "$s" "$v" "${c}_calls" "$calls"
        record "$s" "$v" "${c}_per_line" "$(awk -v c="$calls" -v l="$lines" 'BEGIN { if (l > 0) printf "%.4f\n", c / l }')"
        record "$s" "$v" "${c}_usec_per_call" "${usec:-}"
    done
    local xr ml
    xr=$(sed -n 's/^cmdstat_xread:calls=\([0-9]*\),.*/\1/p' <<<"$stats")
    ml=$(sed -n 's/^cmdstat_multi:calls=\([0-9]*\),.*/\1/p' <<<"$stats")
    # Lines each node got per XREAD, and lines per MULTI/EXEC batch.
    record "$s" "$v" lines_per_xread_per_node "$(awk -v x="${xr:-0}" -v l="$lines" -v n="$nodes" 'BEGIN { if (x > 0) printf "%.1f\n", l * n / x }')"
    record "$s" "$v" xread_per_node "$(awk -v x="${xr:-0}" -v n="$nodes" 'BEGIN { printf "%.0f\n", x / n }')"
    record "$s" "$v" lines_per_multi "$(awk -v m="${ml:-0}" -v l="$lines" 'BEGIN { if (m > 0) printf "%.1f\n", l / m }')"
    # Every other command the nodes sent (HSET of their progress, INCRBY of ids, ...).
    record "$s" "$v" other_commands "$(awk -F'[_:,=]' '/^cmdstat_/ && $2 !~ /^(xadd|xread|multi|exec|info|config.*|flushall|ping)$/ {
        printf "%s%s %s", sep, toupper($2), $4; sep = "; " }' <<<"$stats")"
    grep '^cmdstat_' <<<"$stats" >"$OUT/redis-cmdstats-$s-$v-$round.txt" || true
}

# metrics PORT: the node's backplane counters, "appended read duplicates lost".
metrics() {
    curl -s --max-time 2 "http://127.0.0.1:$1/metrics" |
        awk '$1 == "wscast_backplane_appended_total" {a = $2} $1 == "wscast_backplane_read_total" {r = $2}
             $1 == "wscast_backplane_duplicates_total" {d = $2} $1 == "wscast_backplane_lost_total" {l = $2}
             END { print a + 0, r + 0, d + 0, l + 0 }'
}

# --- 1. and 2.: one node, plain vs redis ---------------------------------------------

# one_node fanout|paced|paced1 plain|redis|redis_cap
one_node() {
    local s=$1 v=$2 r k key=bench-$1-$2-$round hist=() n=$FAN_N
    FANOUT_FLAGS=(--order)
    [[ $s == fanout ]] && hist=(--history "$BIG_HISTORY")
    case $v in
    plain) WSCAST_FLAGS=(${hist[@]+"${hist[@]}"}) ;;
    redis) WSCAST_FLAGS=(${hist[@]+"${hist[@]}"} --redis "redis://127.0.0.1:$RPORT" --redis-key "$key") ;;
    redis_cap) WSCAST_FLAGS=(--redis "redis://127.0.0.1:$RPORT" --redis-key "$key") ;;
    esac
    redis_reset
    case $s in
    fanout) run_fanout wscast "$s" --rate max --duration $((LOAD * 6)) --count $((LOAD * 10000)) --size 64 ;;
    paced) run_fanout wscast "$s" --rate "$PACED_RATE" --duration "$PACED" --size 64 ;;
    paced1) FAN_N=1 run_fanout wscast "$s" --rate "$PACED_RATE" --duration "$PACED" --size 64; n=1 ;;
    esac
    WSCAST_FLAGS=() FANOUT_FLAGS=()
    cp "$OUT/fan.out.err" "$OUT/redis-$s-$v-$round.loadgen.err"
    cp "$OUT/wscast.err" "$OUT/redis-$s-$v-$round.wscast.err"
    r=$FAN_RESULT
    if [[ -z $r ]]; then
        FAILED+=("$s $v round $round: no result")
        return
    fi
    for k in per_server_cpu_s rate lines deliveries lost dropped repeats gaps clients_exact clients secs server_cpu_pct loadgen_cpu_pct p50_us p99_us max_us; do
        record "$s" "$v" "$k" "$(field "$r" "$k")"
    done
    # How long the feeder took to write every line into the server's stdin.
    record "$s" "$v" feed_s "$(sed -n 's/^feed: .* in \([0-9.]*\) s .*/\1/p' "$OUT/feed.err")"
    local lines exact
    lines=$(field "$r" lines) exact=$(field "$r" clients_exact)
    [[ $v == redis* ]] && redis_after "$s" "$v" "$((lines + 1))" 1
    LAST[$s.$v]=$r
    log "$s $v: $lines lines, $(field "$r" per_server_cpu_s) deliveries/server-CPU-s, $(field "$r" rate)/s, lost $(field "$r" lost), repeats $(field "$r" repeats), gaps $(field "$r" gaps), exact clients $exact of $(field "$r" clients), dropped $(field "$r" dropped), p50/p99/max $(field "$r" p50_us)/$(field "$r" p99_us)/$(field "$r" max_us) us, server $(pct "$(field "$r" server_cpu_pct)")% loadgen $(pct "$(field "$r" loadgen_cpu_pct)")%$([[ $v == redis* ]] && echo ", redis $(median_last "$s" "$v" redis_us_per_line) us/line, xadd $(median_last "$s" "$v" xadd_per_line)/line, xread/node $(median_last "$s" "$v" xread_per_node)")"
    if [[ $(field "$r" lost) != 0 || $(field "$r" dropped) != 0 || $(field "$r" repeats) != 0 || $exact != "$n" ]]; then
        FAILED+=("$s $v round $round: lost $(field "$r" lost), repeats $(field "$r" repeats), gaps $(field "$r" gaps), exact clients $exact of $n, dropped $(field "$r" dropped)")
    fi
}

# median_last SCENARIO VARIANT METRIC: the last value recorded.
median_last() { awk -F'\t' -v s="$1" -v v="$2" -v m="$3" '$1 == s && $2 == v && $3 == m {x = $4} END {print x}' "$RAW"; }

# --- 3. two nodes, one feed ----------------------------------------------------------

# start_node STDIN FLAGS...: a wscast node on SERVER_CPU; sets NPID, NPORT.
start_node() {
    local stdin=$1 name=$2
    shift 2
    NPORT=$(free_port)
    taskset -c "$SERVER_CPU" "$WSCAST" --listen "127.0.0.1:$NPORT" --mode broadcast --max-connections 50000 \
        --no-commands --log-level warn "$@" <"$stdin" >/dev/null 2>"$OUT/$name.err" &
    NPID=$!
    PIDS+=("$NPID")
    local i
    for i in $(seq 100); do
        (exec 4<>"/dev/tcp/127.0.0.1/$NPORT") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "$name did not start listening on $NPORT; see $OUT/$name.err" >&2
    exit 1
}

# two_nodes HISTORY (default|N)
two_nodes() {
    local h=$1 v flags=() key=bench-two-$1-$round apid aport bpid bport la lb ra rb
    [[ $h != default ]] && flags=(--history "$h")
    v=h$h
    redis_reset
    # Node B first, its stdin empty (a node keeps serving after stdin ends); then A on the fifo.
    start_node /dev/null node-b --redis "redis://127.0.0.1:$RPORT" --redis-key "$key" ${flags[@]+"${flags[@]}"}
    bpid=$NPID bport=$NPORT
    new_fifo
    start_node "$FIFO" node-a --redis "redis://127.0.0.1:$RPORT" --redis-key "$key" ${flags[@]+"${flags[@]}"}
    apid=$NPID aport=$NPORT
    local dur=$((TWO_LINES / 2000 + 60))
    loadgen_bg "$OUT/two-a.out" fanout --url "ws://127.0.0.1:$aport/ws" -n "$FAN_N" --server-pid "$apid" \
        --duration "$dur" --quiet 5 --rcvbuf "$FAN_RCVBUF" --order
    la=$LPID
    wait_ready "$OUT/two-a.out"
    loadgen_bg "$OUT/two-b.out" fanout --url "ws://127.0.0.1:$bport/ws" -n "$FAN_N" --server-pid "$bpid" \
        --duration "$dur" --quiet 5 --rcvbuf "$FAN_RCVBUF" --order
    lb=$LPID
    wait_ready "$OUT/two-b.out"
    sleep 0.5
    local t0 t1
    t0=$(date +%s.%N)
    taskset -c "$LOAD_CPU" "$BIN/loadgen" feed --rate max --duration "$dur" --count "$TWO_LINES" --size 64 \
        >"$FIFO" 2>"$OUT/feed.err"
    t1=$(date +%s.%N)
    wait "$la" || true
    wait "$lb" || true
    local ma mb
    read -r -a ma <<<"$(metrics "$aport")"
    read -r -a mb <<<"$(metrics "$bport")"
    kill "$apid" "$bpid" 2>/dev/null || true
    wait "$apid" "$bpid" 2>/dev/null || true
    cp "$OUT/two-a.out.err" "$OUT/redis-two-$v-$round-a.loadgen.err"
    cp "$OUT/two-b.out.err" "$OUT/redis-two-$v-$round-b.loadgen.err"
    cp "$OUT/node-a.err" "$OUT/redis-two-$v-$round-a.wscast.err"
    cp "$OUT/node-b.err" "$OUT/redis-two-$v-$round-b.wscast.err"
    ra=$(grep '^RESULT' "$OUT/two-a.out" || true)
    rb=$(grep '^RESULT' "$OUT/two-b.out" || true)
    if [[ -z $ra || -z $rb ]]; then
        FAILED+=("two nodes $v round $round: no result (A: ${ra:+ok}, B: ${rb:+ok})")
        return
    fi
    local node r k m
    for node in a b; do
        if [[ $node == a ]]; then r=$ra m=("${ma[@]}"); else r=$rb m=("${mb[@]}"); fi
        for k in lines deliveries lost repeats gaps clients_exact clients dropped rate secs per_server_cpu_s server_cpu_pct loadgen_cpu_pct p50_us p99_us max_us; do
            record "two_$node" "$v" "$k" "$(field "$r" "$k")"
        done
        record "two_$node" "$v" lines_per_s "$(awk -v l="$(field "$r" lines)" -v s="$(field "$r" secs)" 'BEGIN { if (s > 0) printf "%.0f\n", l / s }')"
        record "two_$node" "$v" bp_appended "${m[0]}"
        record "two_$node" "$v" bp_read "${m[1]}"
        record "two_$node" "$v" bp_duplicates "${m[2]}"
        record "two_$node" "$v" bp_lost "${m[3]}"
        record "two_$node" "$v" trim_warnings "$(grep -c 'trimmed from the stream' "$OUT/node-$node.err" || true)"
        if [[ $(field "$r" lost) != 0 || $(field "$r" repeats) != 0 || $(field "$r" clients_exact) != "$FAN_N" || $(field "$r" dropped) != 0 ]]; then
            FAILED+=("two nodes $v round $round, node ${node^^}: lost $(field "$r" lost) deliveries ($(awk -v l="$(field "$r" lost)" -v c="$(field "$r" clients)" 'BEGIN { if (c > 0) printf "%.0f", l / c }') lines per client), repeats $(field "$r" repeats), gaps $(field "$r" gaps), exact clients $(field "$r" clients_exact) of $FAN_N, dropped $(field "$r" dropped); backplane lost_total ${m[3]}")
        fi
    done
    # B's lag: its last delivery after A's; its latency over A's.
    local lag feed_s
    lag=$(awk -v a="$(field "$ra" last_wall_ns)" -v b="$(field "$rb" last_wall_ns)" 'BEGIN { printf "%.1f\n", (b - a) / 1e6 }')
    feed_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }')
    record two "$v" lag_last_ms "$lag"
    record two "$v" lag_first_ms "$(awk -v a="$(field "$ra" first_wall_ns)" -v b="$(field "$rb" first_wall_ns)" 'BEGIN { printf "%.1f\n", (b - a) / 1e6 }')"
    record two "$v" lag_p50_ms "$(awk -v a="$(field "$ra" p50_us)" -v b="$(field "$rb" p50_us)" 'BEGIN { printf "%.2f\n", (b - a) / 1e3 }')"
    record two "$v" lag_p99_ms "$(awk -v a="$(field "$ra" p99_us)" -v b="$(field "$rb" p99_us)" 'BEGIN { printf "%.2f\n", (b - a) / 1e3 }')"
    record two "$v" feed_s "$feed_s"
    # The cluster's throughput: lines from the feeder's start to the last delivery on either node.
    record two "$v" cluster_lines_per_s "$(awk -v l="$TWO_LINES" -v t0="$t0" -v a="$(field "$ra" last_wall_ns)" -v b="$(field "$rb" last_wall_ns)" 'BEGIN { e = (a > b ? a : b) / 1e9; if (e > t0) printf "%.0f\n", l / (e - t0) }')"
    record two "$v" cluster_deliveries_per_s "$(awk -v d="$(($(field "$ra" deliveries) + $(field "$rb" deliveries)))" -v t0="$t0" -v a="$(field "$ra" last_wall_ns)" -v b="$(field "$rb" last_wall_ns)" 'BEGIN { e = (a > b ? a : b) / 1e9; if (e > t0) printf "%.0f\n", d / (e - t0) }')"
    redis_after two "$v" "$((TWO_LINES + 1))" 2
    log "two nodes, history $h: A $(field "$ra" lines) lines, lost $(field "$ra" lost), repeats $(field "$ra" repeats), exact $(field "$ra" clients_exact); B $(field "$rb" lines) lines, lost $(field "$rb" lost), repeats $(field "$rb" repeats), exact $(field "$rb" clients_exact), backplane lost A ${ma[3]} B ${mb[3]}; $(median_last two "$v" cluster_lines_per_s) lines/s; B's last delivery ${lag} ms after A's; p50 A $(field "$ra" p50_us) B $(field "$rb" p50_us) us; redis $(median_last two "$v" redis_us_per_line) us/line, xread/node $(median_last two "$v" xread_per_node)"
}

# --- run -----------------------------------------------------------------------------
STARTED=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
start_redis
log "redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on 127.0.0.1:$RPORT (pid $RPID, CPU $LOAD_CPU)"
declare -A LAST
for round in $(seq "$ROUNDS"); do
    log "=== round $round of $ROUNDS"
    LAST=()
    # Rotate which goes first from round to round.
    case $((round % 3)) in
    1) fan=(plain redis redis_cap) ;;
    2) fan=(redis redis_cap plain) ;;
    0) fan=(redis_cap plain redis) ;;
    esac
    for v in "${fan[@]}"; do one_node fanout "$v"; done
    for v in redis redis_cap; do
        record fanout_ratio "$v" ratio "$(awk -v a="$(field "${LAST[fanout.$v]:-}" per_server_cpu_s)" -v b="$(field "${LAST[fanout.plain]:-}" per_server_cpu_s)" 'BEGIN { if (a != "" && b > 0) printf "%.4f\n", a / b }')"
    done
    if ((round % 2)); then order=(plain redis); else order=(redis plain); fi
    for s in paced paced1; do
        for v in "${order[@]}"; do one_node "$s" "$v"; done
        for k in p50_us p99_us max_us; do
            record "${s}_added" redis "$k" "$(awk -v a="$(field "${LAST[$s.redis]:-}" "$k")" -v b="$(field "${LAST[$s.plain]:-}" "$k")" 'BEGIN { if (a != "" && b != "") print a - b }')"
        done
    done
    if ((round % 2)); then hs=(default "$BIG_HISTORY"); else hs=("$BIG_HISTORY" default); fi
    for h in "${hs[@]}"; do two_nodes "$h"; done
done
ELAPSED=$(($(date +%s) - STARTED))

# --- report --------------------------------------------------------------------------
M() { median "$@"; }
rounds_list() {
    awk -F'\t' -v s="$1" -v v="$2" -v m="$3" -v d="${4:-1}" '$1 == s && $2 == v && $3 == m && $4 != "" {
        if (d == 1e6) printf "%s%.2f", sep, $4 / d; else printf "%s%s", sep, $4; sep = ", " }' "$RAW"
}
sum_of() { awk -F'\t' -v s="$1" -v v="$2" -v m="$3" '$1 == s && $2 == v && $3 == m {t += $4} END {print t + 0}' "$RAW"; }
runs_of() { awk -F'\t' -v s="$1" -v v="$2" -v m="$3" '$1 == s && $2 == v && $3 == m' "$RAW" | wc -l; }
mil() { awk -v n="$1" 'BEGIN { if (n == "-" || n == "") print "-"; else printf "%.2f M\n", n / 1e6 }'; }
x() { awk -v n="$1" 'BEGIN { if (n == "-" || n == "") print "-"; else printf "%.3f×\n", n }'; }
ms() { awk -v u="$1" 'BEGIN { if (u == "-" || u == "") print "-"; else printf "%.2f ms\n", u / 1000 }'; }
check() { awk -v a="$1" "BEGIN { if (a == \"-\" || a == \"\") print \"?\"; else if ($2) print \"**met**\"; else print \"not met\" }"; }
exact_runs() { awk -F'\t' -v s="$1" -v v="$2" -v n="$FAN_N" '$1 == s && $2 == v && $3 == "clients_exact" && $4 == n' "$RAW" | wc -l; }

ratio=$(M fanout_ratio redis ratio)
p99_added=$(M paced_added redis p99_us)
H2=h$BIG_HISTORY

{
    echo "## Redis backplane: $(date -u +'%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), Linux $(uname -r); redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') (\`--save '' --appendonly no\`)."
    if [[ -n ${WSCAST_BIN:-} ]]; then
        echo "wscast: \`$WSCAST_BIN\`;"
    else
        echo "wscast $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src 2>/dev/null || echo ' (src/ modified)');"
    fi
    echo "server(s) on CPU $SERVER_CPU; load generator(s), feeder and Redis on CPU $LOAD_CPU."
    echo "$ROUNDS round(s): fan-out plain/redis/redis_cap ($((LOAD * 10000)) lines each, order rotating), paced plain/redis ($PACED s at $PACED_RATE lines/s, 1,000 clients and 1 client), two nodes with the default --history and --history $BIG_HISTORY ($TWO_LINES lines each); medians; the whole run took ${ELAPSED} s."
    echo "Load averages before/after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)."
    [[ $QUICK == 1 ]] && echo "**Quick run (--quick): smoke-test numbers.**"
    echo
    echo "### 1. One node, $FAN_N clients, $((LOAD * 10000)) lines of 64 B at max rate: plain vs \`--redis\`"
    echo
    echo "| | deliveries per server CPU-s (median) | each round (M) | ÷ plain (median of rounds' ratios) | deliveries/s | lines fed | feeder's time / clients' (first → last delivery) | server / loadgen CPU | lost, repeats, dropped (all runs) | runs with every client exact | Redis CPU per line |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    for v in plain redis redis_cap; do
        case $v in
        plain) label="plain (\`--history $BIG_HISTORY\`)" rr="" ;;
        redis) label="redis (\`--history $BIG_HISTORY --redis\`: stream cap $BIG_HISTORY)" rr="**$(x "$(M fanout_ratio redis ratio)")** ($(rounds_list fanout_ratio redis ratio))" ;;
        redis_cap) label="redis_cap (\`--redis\`, default \`--history\`: the default stream cap)" rr="$(x "$(M fanout_ratio redis_cap ratio)") ($(rounds_list fanout_ratio redis_cap ratio))" ;;
        esac
        echo "| $label | $(mil "$(M fanout $v per_server_cpu_s)") | $(rounds_list fanout $v per_server_cpu_s 1e6) | $rr | $(mil "$(M fanout $v rate)") | $(M fanout $v lines) | $(M fanout $v feed_s) s / $(M fanout $v secs) s | $(pct "$(M fanout $v server_cpu_pct)")% / $(pct "$(M fanout $v loadgen_cpu_pct)")% | $(sum_of fanout $v lost), $(sum_of fanout $v repeats), $(sum_of fanout $v dropped) | $(exact_runs fanout $v) of $(runs_of fanout $v clients_exact) | $([[ $v == redis* ]] && echo "$(M fanout $v redis_us_per_line) µs" || echo "") |"
    done
    echo
    echo "Goal: redis ÷ plain ≥ 0.8× (lossless runs): $(check "$ratio" 'a >= 0.8')."
    echo
    echo "### 2. stdin → client latency at $PACED_RATE lines/s for ${PACED} s (default history)"
    echo
    echo "| clients | | p50 | p99 | max | lost, repeats | Redis CPU per line |"
    echo "|---|---|---|---|---|---|---|"
    for s in paced paced1; do
        [[ $s == paced ]] && n=$FAN_N || n=1
        for v in plain redis; do
            echo "| $n | $v | $(ms "$(M $s $v p50_us)") | $(ms "$(M $s $v p99_us)") | $(ms "$(M $s $v max_us)") | $(sum_of $s $v lost), $(sum_of $s $v repeats) | $([[ $v == redis ]] && echo "$(M $s redis redis_us_per_line) µs" || echo "") |"
        done
        echo "| $n | added by Redis (redis − plain, median of rounds) | $(ms "$(M ${s}_added redis p50_us)") | **$(ms "$(M ${s}_added redis p99_us)")** ($(rounds_list ${s}_added redis p99_us) µs) | $(ms "$(M ${s}_added redis max_us)") | | |"
    done
    echo
    echo "Goal: p99 added ≤ 1 ms: $(check "$p99_added" 'a <= 1000') with $FAN_N clients, $(check "$(M paced1_added redis p99_us)" 'a <= 1000') with 1 client."
    echo
    echo "### 3. Two nodes × $FAN_N clients, $TWO_LINES lines at max rate into node A's stdin"
    echo
    echo "| | default \`--history\` (the default stream cap) | --history $BIG_HISTORY |"
    echo "|---|---|---|"
    for node in a b; do
        N=${node^^}
        echo "| node $N: runs with every client exact (all lines, once, in order) | $(exact_runs two_$node hdefault) of $(runs_of two_$node hdefault clients_exact) | $(exact_runs two_$node "$H2") of $(runs_of two_$node "$H2" clients_exact) |"
        echo "| node $N: deliveries lost / repeats / gaps (each run) | $(rounds_list two_$node hdefault lost) / $(rounds_list two_$node hdefault repeats) / $(rounds_list two_$node hdefault gaps) | $(rounds_list two_$node "$H2" lost) / $(rounds_list two_$node "$H2" repeats) / $(rounds_list two_$node "$H2" gaps) |"
        echo "| node $N: entries trimmed before read (\`wscast_backplane_lost_total\`, each run) | $(rounds_list two_$node hdefault bp_lost) | $(rounds_list two_$node "$H2" bp_lost) |"
        echo "| node $N: deliveries per server CPU-s | $(mil "$(M two_$node hdefault per_server_cpu_s)") | $(mil "$(M two_$node "$H2" per_server_cpu_s)") |"
        echo "| node $N: latency p50 / p99 / max | $(ms "$(M two_$node hdefault p50_us)") / $(ms "$(M two_$node hdefault p99_us)") / $(ms "$(M two_$node hdefault max_us)") | $(ms "$(M two_$node "$H2" p50_us)") / $(ms "$(M two_$node "$H2" p99_us)") / $(ms "$(M two_$node "$H2" max_us)") |"
    done
    echo "| cluster: lines/s (feeder start → last delivery on either node) | $(M two hdefault cluster_lines_per_s) | $(M two "$H2" cluster_lines_per_s) |"
    echo "| cluster: deliveries/s, both nodes | $(mil "$(M two hdefault cluster_deliveries_per_s)") | $(mil "$(M two "$H2" cluster_deliveries_per_s)") |"
    echo "| feeder's time (all lines into A's stdin) / A's clients' (first → last delivery) | $(M two hdefault feed_s) s / $(M two_a hdefault secs) s | $(M two "$H2" feed_s) s / $(M two_a "$H2" secs) s |"
    echo "| B's last delivery after A's (each run) | $(rounds_list two hdefault lag_last_ms) ms | $(rounds_list two "$H2" lag_last_ms) ms |"
    echo "| B's p50 / p99 latency minus A's | $(M two hdefault lag_p50_ms) / $(M two hdefault lag_p99_ms) ms | $(M two "$H2" lag_p50_ms) / $(M two "$H2" lag_p99_ms) ms |"
    echo "| Redis CPU per line | $(M two hdefault redis_us_per_line) µs | $(M two "$H2" redis_us_per_line) µs |"
    echo
    echo "### 4. Redis commands per line (lines: those fed plus the END line; CONFIG RESETSTAT before each load)"
    echo
    echo "| load | XADD per line | MULTI / EXEC per line (lines per batch) | XREAD per node | lines per XREAD per node | usec_per_call XADD / EXEC / XREAD | other commands, all nodes (calls, last run) |"
    echo "|---|---|---|---|---|---|---|"
    for sv in "fanout redis" "fanout redis_cap" "paced redis" "paced1 redis" "two hdefault" "two $H2"; do
        read -r s v <<<"$sv"
        echo "| $s $v | $(M "$s" "$v" xadd_per_line) | $(M "$s" "$v" multi_per_line) / $(M "$s" "$v" exec_per_line) ($(M "$s" "$v" lines_per_multi)) | $(M "$s" "$v" xread_per_node) | $(M "$s" "$v" lines_per_xread_per_node) | $(M "$s" "$v" xadd_usec_per_call) / $(M "$s" "$v" exec_usec_per_call) / $(M "$s" "$v" xread_usec_per_call) | $(median_last "$s" "$v" other_commands) |"
    done
    echo
    if [[ ${#FAILED[@]} -gt 0 ]]; then
        echo "**Failures:**"
        printf -- '- %s\n' "${FAILED[@]}"
        echo
    fi
    echo "Raw numbers: \`bench/out/redis.tsv\`; each run's stderr: \`bench/out/redis-*.err\`. Reproduce: \`bench/redis.sh\`."
} | tee "$OUT/redis.md"
log "written to $OUT/redis.md"
[[ ${#FAILED[@]} -eq 0 ]]
