#!/usr/bin/env bash
# Resume (issue 16), the performance part: what keeping a history costs the live
# fan-out, and what 1,000 clients resuming at once cost the server.
#
#   bench/resume.sh             3 rounds, 10 s fan-out loads (~2-3 min)
#   bench/resume.sh --quick     smoke test: 1 round, 2 s loads (~1 min)
#   bench/resume.sh --rounds 5  more rounds (medians are reported)
#   bench/resume.sh --load 5    seconds per fan-out load
#   bench/resume.sh --no-build  use the binaries already in $CARGO_TARGET_DIR/release
#
# 1. Live fan-out, history off vs on: 1,000 clients, the feeder writing 64-byte lines into
#    the server's stdin at max rate (bench/run.sh's "fan-out, max rate"), against
#      off     wscast --history 0
#      on      wscast (default history: 1,024 messages / 1 MiB), plain clients
#      resume  the same server, every client opted in (wscast.resume): each line arrives
#              as {"id":"...","text":"<line>"} (loadgen fanout --resume)
#    in alternation (off, on, resume, off, on, ...): deliveries per server CPU-second,
#    medians, and each round's on ÷ off (goal ≥ 0.9×).
# 2. Replay: a server with the default history is fed 1,000 lines of 200 bytes; then
#    1,000 clients connect at once (256 handshakes in flight), each with since=<the id
#    before the first line>, so each recovers all 1,000 (loadgen resume). Measured: time
#    from the first connect until every client has all 1,000 (each client's count is
#    checked: one wrong count fails the run), server CPU, and the server's peak RSS growth
#    (VmHWM after, with the high-water mark reset by `echo 5 > /proc/PID/clear_refs`,
#    minus VmRSS before) against the goal: < history bytes + 1 MiB. Alternated with the
#    same replay at 100 handshakes in flight ("replay100": fewer than wscast's listen
#    backlog of 128, whose overflow costs a dropped handshake a 1 s retransmission), and a
#    control ("fresh"): the 1,000 clients opting in without since (nothing to replay),
#    which is what connecting alone costs.
#
# Server on CPU 0, load generator and feeder on CPU 1 (taskset), like bench/run.sh, whose
# helpers it shares (bench/lib.sh). 127.0.0.1 only; every process it starts is killed on
# exit. Results: bench/out/resume.md, raw numbers bench/out/resume.tsv.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/bench}
BIN=$CARGO_TARGET_DIR/release
OUT=${BENCH_OUT:-$HERE/out}

ROUNDS=3 LOAD=10 FAN_N=1000 QUICK=0
# Each client's SO_RCVBUF, as in bench/run.sh (1,000 autotuned receive buffers on one
# machine push it into TCP memory pressure).
FAN_RCVBUF=131072
REPLAY_N=1000 REPLAY_LINES=1000 REPLAY_SIZE=200
HISTORY_BYTES=$((1024 * 1024)) # wscast's default --history-bytes
while [[ $# -gt 0 ]]; do
    case $1 in
    --quick) QUICK=1 ROUNDS=1 LOAD=2 ;;
    --rounds) ROUNDS=$2; shift ;;
    --load) LOAD=$2; shift ;;
    --no-build) NO_BUILD=1 ;;
    -h | --help) sed -n '2,33p' "${BASH_SOURCE[0]}"; exit 0 ;;
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

if [[ -z ${NO_BUILD:-} ]]; then
    log "building wscast and loadgen (release) into $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release --quiet --bin wscast)
    (cd "$HERE/loadgen" && cargo build --release --quiet)
fi
for b in wscast loadgen; do
    [[ -x $BIN/$b ]] || { echo "missing $BIN/$b" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ $(ulimit -n) -lt $((FAN_N + REPLAY_N + 100)) ]]; then
    echo "open-files limit $(ulimit -n) is too low" >&2
    exit 1
fi

mkdir -p "$OUT"
RAW=$OUT/resume.tsv
: >"$RAW"
FIFO=$(mktemp -u /tmp/wscast-resume.XXXXXX)
WSCAST_FLAGS=() FANOUT_FLAGS=()

# --- 1. live fan-out, history off / on / on with every client opted in ---------------

# fanout_variant off|on|resume
fanout_variant() {
    local v=$1 r
    case $v in
    off) WSCAST_FLAGS=(--history 0) FANOUT_FLAGS=() ;;
    on) WSCAST_FLAGS=() FANOUT_FLAGS=() ;;
    resume) WSCAST_FLAGS=() FANOUT_FLAGS=(--resume) ;;
    esac
    run_fanout wscast "fanout_$v" --rate max --duration "$LOAD" --size 64
    WSCAST_FLAGS=() FANOUT_FLAGS=()
    # Keep each run's stderr (the next run overwrites fan.out.err and wscast.err).
    cp "$OUT/fan.out.err" "$OUT/fan-$v-$round.err"
    cp "$OUT/wscast.err" "$OUT/wscast-fan-$v-$round.err"
    r=$FAN_RESULT
    if [[ -z $r ]]; then
        FAILED+=("fan-out $v: no result")
        return
    fi
    local k
    for k in per_server_cpu_s rate lines lost dropped server_cpu_pct loadgen_cpu_pct p99_us; do
        record fanout "$v" "$k" "$(field "$r" "$k")"
    done
    # Bytes the server wrote per delivery (frame header included) and per CPU-second: the
    # tagged encoding makes each frame bigger, and a max-rate fan-out's cost is the
    # kernel copying bytes into sockets.
    record fanout "$v" frame_bytes "$(awk -v b="$(field "$r" wire_bytes)" -v d="$(field "$r" deliveries)" 'BEGIN { if (d > 0) printf "%.1f\n", b / d }')"
    record fanout "$v" wire_per_cpu "$(awk -v b="$(field "$r" wire_bytes)" -v c="$(field "$r" server_cpu_s)" 'BEGIN { if (c > 0) printf "%.0f\n", b / c }')"
    LAST_PER_CPU[$v]=$(field "$r" per_server_cpu_s)
    LAST_WIRE[$v]=$(awk -v b="$(field "$r" wire_bytes)" -v c="$(field "$r" server_cpu_s)" 'BEGIN { if (c > 0) printf "%.0f\n", b / c }')
    log "fan $v: $(field "$r" lines) lines, $(field "$r" per_server_cpu_s) deliveries/server-CPU-s, $(field "$r" rate)/s, lost $(field "$r" lost), dropped $(field "$r" dropped), server $(pct "$(field "$r" server_cpu_pct)")% loadgen $(pct "$(field "$r" loadgen_cpu_pct)")%"
    if [[ $(field "$r" lost) != 0 || $(field "$r" dropped) != 0 ]]; then
        FAILED+=("fan-out $v: lost $(field "$r" lost), dropped $(field "$r" dropped)")
    fi
}

# --- 2. replay -----------------------------------------------------------------------

# drops: packets the kernel dropped that can stall a connect on loopback: the
# per-CPU input backlog (/proc/net/softnet_stat, 2nd column, net.core.netdev_max_backlog)
# and listen-queue overflows (TcpExt ListenOverflows). A dropped SYN waits 1 s to be
# sent again. Machine-wide: other work on the machine counts too.
drops() {
    local softnet=0 listen hex
    for hex in $(awk '{ print $2 }' /proc/net/softnet_stat); do
        softnet=$((softnet + 16#$hex))
    done
    listen=$(awk '$1 == "TcpExt:" { if (!h) { for (i = 2; i <= NF; i++) if ($i == "ListenOverflows") c = i; h = 1 } else print $c }' /proc/net/netstat)
    echo "$softnet $listen"
}

# replay_round replay|replay100|fresh
replay_round() {
    local v=$1 from probe r rss0 hwm1 ok
    WSCAST_FLAGS=()
    start_server wscast broadcast
    # One opted-in client, connected before anything is fed: its status names the id
    # before the first line (`from`), and it returns once it has all the lines live, so
    # the history holds them all before the replay starts.
    loadgen_bg "$OUT/probe.out" resume --url "$URL" -n 1 --expect "$REPLAY_LINES" --timeout 60 --linger 0
    wait_ready "$OUT/probe.out"
    from=$(sed -n 's/^ready .* from=//p' "$OUT/probe.out")
    timeout 60 taskset -c "$LOAD_CPU" "$BIN/loadgen" feed --rate max --duration 30 \
        --count "$REPLAY_LINES" --size "$REPLAY_SIZE" --no-end >"$FIFO" 2>"$OUT/feed.err"
    wait "$LPID" || true
    probe=$(grep '^RESULT' "$OUT/probe.out" || true)
    if [[ $(field "$probe" ok) != 1 ]]; then
        FAILED+=("replay $v: the probe did not get the $REPLAY_LINES lines live")
        cat "$OUT/probe.out.err" >&2
        stop_server
        return
    fi
    sleep 0.3
    rss0=$(rss_kb "$SPID" VmRSS)
    # Reset the peak (VmHWM) to the current RSS (proc(5): clear_refs, 5).
    echo 5 >"/proc/$SPID/clear_refs"
    local args=(resume --url "$URL" -n "$REPLAY_N" --server-pid "$SPID" --rcvbuf "$FAN_RCVBUF" --timeout 60)
    case $v in
    replay) args+=(--since "$from" --expect "$REPLAY_LINES") ;;
    # The same with fewer handshakes in flight than wscast's listen backlog (128).
    replay100) args+=(--since "$from" --expect "$REPLAY_LINES" --concurrency 100) ;;
    fresh) args+=(--expect 0) ;;
    esac
    local d0 d1
    read -r -a d0 <<<"$(drops)"
    r=$(taskset -c "$LOAD_CPU" "$BIN/loadgen" "${args[@]}" 2>"$OUT/replay.err" | grep '^RESULT' || true)
    hwm1=$(rss_kb "$SPID" VmHWM)
    read -r -a d1 <<<"$(drops)"
    record "$v" wscast softnet_drops "$((d1[0] - d0[0]))"
    record "$v" wscast listen_overflows "$((d1[1] - d0[1]))"
    stop_server
    ok=$(field "$r" ok)
    if [[ $ok != 1 ]]; then
        FAILED+=("replay $v: $(tail -n 2 "$OUT/replay.err" | tr '\n' ' ')")
    fi
    local k
    for k in ok secs connect_s first_live_s p50_us p99_us server_cpu_s loadgen_cpu_pct bytes_per_client wrong recovered; do
        record "$v" wscast "$k" "$(field "$r" "$k")"
    done
    record "$v" wscast rss0_kb "$rss0"
    record "$v" wscast growth_kb "$((hwm1 - rss0))"
    log "$v: since=$([[ $v == fresh ]] && echo - || echo "$from") ok=$ok, all live after $(field "$r" secs) s (all connected $(field "$r" connect_s) s), server CPU $(field "$r" server_cpu_s) s, loadgen $(pct "$(field "$r" loadgen_cpu_pct)")%, recovered $(field "$r" recovered) ($(field "$r" bytes_per_client) B per client), wrong $(field "$r" wrong); RSS $rss0 kB, peak +$((hwm1 - rss0)) kB; dropped by the kernel: $((d1[0] - d0[0])) backlog, $((d1[1] - d0[1])) listen"
}

# --- run -----------------------------------------------------------------------------
STARTED=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
FAILED=()
declare -A LAST_PER_CPU LAST_WIRE
for round in $(seq "$ROUNDS"); do
    log "=== round $round of $ROUNDS"
    LAST_PER_CPU=() LAST_WIRE=()
    for v in off on resume; do fanout_variant "$v"; done
    for v in on resume; do
        record fanout_ratio "$v" ratio "$(awk -v a="${LAST_PER_CPU[$v]:-}" -v b="${LAST_PER_CPU[off]:-}" 'BEGIN { if (a != "" && b > 0) printf "%.4f\n", a / b }')"
        record fanout_ratio "$v" wire_ratio "$(awk -v a="${LAST_WIRE[$v]:-}" -v b="${LAST_WIRE[off]:-}" 'BEGIN { if (a != "" && b > 0) printf "%.4f\n", a / b }')"
    done
    for v in replay replay100 fresh; do replay_round "$v"; done
done
ELAPSED=$(($(date +%s) - STARTED))

# --- report --------------------------------------------------------------------------
M() { median "$@"; }
# minmax SCENARIO SERVER METRIC: "min–max" over the rounds.
minmax() {
    awk -F'\t' -v s="$1" -v v="$2" -v m="$3" '$1 == s && $2 == v && $3 == m && $4 != "" {print $4}' "$RAW" |
        sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END { if (NR) printf "%s–%s\n", lo, hi; else print "-" }'
}
mil() { awk -v n="$1" 'BEGIN { if (n == "-" || n == "") print "-"; else printf "%.2f M\n", n / 1e6 }'; }
x() { awk -v n="$1" 'BEGIN { if (n == "-" || n == "") print "-"; else printf "%.3f×\n", n }'; }
ratio3() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.3f×\n", a / b }'; }
rounds_of() {
    awk -F'\t' -v s="$1" -v v="$2" -v m="$3" '$1 == s && $2 == v && $3 == m && $4 != "" {printf "%s%.2f", sep, $4 / 1e6; sep = ", "}' "$RAW"
}
oks() { awk -F'\t' -v s="$1" '$1 == s && $3 == "ok" && $4 == 1' "$RAW" | wc -l; }
rounds_list() {
    awk -F'\t' -v s="$1" -v m="$2" '$1 == s && $3 == m {printf "%s%s", sep, $4; sep = ", "}' "$RAW"
}
check() { awk -v a="$1" "BEGIN { if (a == \"-\" || a == \"\") print \"?\"; else if ($2) print \"**met**\"; else print \"not met\" }"; }

off=$(M fanout off per_server_cpu_s) on=$(M fanout on per_server_cpu_s) res=$(M fanout resume per_server_cpu_s)
r_on=$(M fanout_ratio on ratio) r_res=$(M fanout_ratio resume ratio)
w_on=$(M fanout_ratio on wire_ratio) w_res=$(M fanout_ratio resume wire_ratio)
growth=$(M replay wscast growth_kb) growth_max=$(awk -F'\t' '$1 == "replay" && $3 == "growth_kb" {print $4}' "$RAW" | sort -g | tail -n 1)
fresh_growth=$(M fresh wscast growth_kb)
growth100=$(M replay100 wscast growth_kb) growth100_max=$(awk -F'\t' '$1 == "replay100" && $3 == "growth_kb" {print $4}' "$RAW" | sort -g | tail -n 1)
retained=$(M replay wscast bytes_per_client)
goal_kb=$(((HISTORY_BYTES + 1024 * 1024) / 1024))
strict_kb=$(awk -v b="$retained" 'BEGIN { if (b == "-") print "-"; else printf "%.0f\n", b / 1024 + 1024 }')
ms() { awk -v s="$1" 'BEGIN { if (s == "-" || s == "") print "-"; else printf "%.0f ms\n", s * 1000 }'; }
us_ms() { awk -v u="$1" 'BEGIN { if (u == "-" || u == "") print "-"; else printf "%.0f ms\n", u / 1000 }'; }

{
    echo "## Resume: $(date -u +'%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -n 1), Linux $(uname -r)."
    echo "wscast $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$ROOT" && git diff --quiet HEAD -- src 2>/dev/null || echo ' (modified)'); server on CPU $SERVER_CPU, load generator and feeder on CPU $LOAD_CPU;"
    echo "$ROUNDS round(s) of off, on, resume (fan-out, ${LOAD} s each) then replay, replay100, fresh; medians; the whole run took ${ELAPSED} s."
    echo "Load averages before/after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)."
    [[ $QUICK == 1 ]] && echo "**Quick run (--quick): smoke-test numbers.**"
    echo
    echo "### Live fan-out: $FAN_N clients, 64 B lines at max rate"
    echo
    echo "| variant | deliveries per server CPU-s (median) | each round (M) | ÷ off, median of rounds' ratios | ÷ off, ratio of medians | goal | verdict | bytes per delivery (frame) | MB written per server CPU-s, ÷ off | deliveries/s | server / loadgen CPU | lost, dropped |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    for v in off on resume; do
        case $v in
        off) label="history off (\`--history 0\`)" r="" rm="" goal="" verdict="" w="" ;;
        on) label="history on (default), plain clients" r=$(x "$r_on") rm=$(ratio3 "$on" "$off") goal="≥ 0.9×" verdict=$(check "$r_on" 'a >= 0.9') w=", $(x "$w_on")" ;;
        resume) label="history on, every client \`wscast.resume\`" r=$(x "$r_res") rm=$(ratio3 "$res" "$off") goal="(≥ 0.9×)" verdict=$(check "$r_res" 'a >= 0.9') w=", $(x "$w_res")" ;;
        esac
        echo "| $label | $(mil "$(M fanout $v per_server_cpu_s)") | $(rounds_of fanout $v per_server_cpu_s) | $r | $rm | $goal | $verdict | $(M fanout $v frame_bytes) B | $(awk -v n="$(M fanout $v wire_per_cpu)" 'BEGIN { printf "%.0f", n / 1e6 }')$w | $(mil "$(M fanout $v rate)") | $(pct "$(M fanout $v server_cpu_pct)")% / $(pct "$(M fanout $v loadgen_cpu_pct)")% | $(M fanout $v lost), $(M fanout $v dropped) |"
    done
    echo
    echo "### Replay: $REPLAY_N clients at once, each resuming $REPLAY_LINES messages of $REPLAY_SIZE B back"
    echo
    echo "| | replay (\`since\` = the id before the first line), 256 handshakes in flight | replay, 100 in flight | fresh (control: opt in, nothing to replay), 256 in flight |"
    echo "|---|---|---|---|"
    echo "| runs with every client's count right | $(oks replay) of $ROUNDS | $(oks replay100) of $ROUNDS | $(oks fresh) of $ROUNDS |"
    echo "| messages recovered (all clients, median run) | $(M replay wscast recovered) | $(M replay100 wscast recovered) | $(M fresh wscast recovered) |"
    echo "| time from the first connect until every client has all (\"time until all live\") | $(ms "$(M replay wscast secs)") ($(minmax replay wscast secs) s) | $(ms "$(M replay100 wscast secs)") ($(minmax replay100 wscast secs) s) | $(ms "$(M fresh wscast secs)") |"
    echo "| … until every client is connected | $(ms "$(M replay wscast connect_s)") | $(ms "$(M replay100 wscast connect_s)") | $(ms "$(M fresh wscast connect_s)") |"
    echo "| per client, time until live: p50 / p99 | $(us_ms "$(M replay wscast p50_us)") / $(us_ms "$(M replay wscast p99_us)") | $(us_ms "$(M replay100 wscast p50_us)") / $(us_ms "$(M replay100 wscast p99_us)") | $(us_ms "$(M fresh wscast p50_us)") / $(us_ms "$(M fresh wscast p99_us)") |"
    echo "| server CPU over that time | $(ms "$(M replay wscast server_cpu_s)") | $(ms "$(M replay100 wscast server_cpu_s)") | $(ms "$(M fresh wscast server_cpu_s)") |"
    echo "| load generator CPU share | $(pct "$(M replay wscast loadgen_cpu_pct)")% | $(pct "$(M replay100 wscast loadgen_cpu_pct)")% | $(pct "$(M fresh wscast loadgen_cpu_pct)")% |"
    echo "| server RSS before | $(M replay wscast rss0_kb) kB | $(M replay100 wscast rss0_kb) kB | $(M fresh wscast rss0_kb) kB |"
    echo "| peak RSS growth (VmHWM − VmRSS before), median (max) | **$growth kB** ($growth_max kB) | **$growth100 kB** ($growth100_max kB) | $fresh_growth kB |"
    echo "| packets the kernel dropped meanwhile (machine-wide): input backlog, listen queue (each round) | $(rounds_list replay softnet_drops); $(rounds_list replay listen_overflows) | $(rounds_list replay100 softnet_drops); $(rounds_list replay100 listen_overflows) | $(rounds_list fresh softnet_drops); $(rounds_list fresh listen_overflows) |"
    echo "| history retained (framed tagged bytes of the $REPLAY_LINES messages, as each client received them) | $retained B | | |"
    echo "| goal: growth < --history-bytes (1 MiB) + 1 MiB = $goal_kb kB | $(check "$growth_max" "a < $goal_kb") | $(check "$growth100_max" "a < $goal_kb") | |"
    echo "| stricter: growth < retained history + 1 MiB = $strict_kb kB | $(check "$growth_max" "a < $strict_kb") | $(check "$growth100_max" "a < $strict_kb") | |"
    echo
    if [[ ${#FAILED[@]} -gt 0 ]]; then
        echo "**Failures:**"
        printf -- '- %s\n' "${FAILED[@]}"
        echo
    fi
    echo "Raw numbers: \`bench/out/resume.tsv\`. Reproduce: \`bench/resume.sh\`."
} | tee "$OUT/resume.md"
log "written to $OUT/resume.md"
[[ ${#FAILED[@]} -eq 0 ]]
