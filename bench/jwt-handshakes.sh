#!/usr/bin/env bash
# Handshakes (connect, upgrade, close) per server CPU-second with --auth-jwt-key: no key,
# an HS256 secret, an ES256 public key; interleaved rounds, wscast pinned to CPU 0 and
# the load generator to CPU 1, 32 handshakes at a time. Keys and tokens come from
# `loadgen jwt-keys` (fresh each run); the token rides in ?token=.
#
#   bench/jwt-handshakes.sh [ROUNDS] [SECONDS]     (default 3 rounds of 10 s)
#
# Builds wscast and the load generator (release) like bench/run.sh; 127.0.0.1 only.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/bench}
BIN=$CARGO_TARGET_DIR/release
ROUNDS=${1:-3} LOAD=${2:-10}
(cd "$ROOT" && cargo build --release --quiet --bin wscast)
(cd "$HERE/loadgen" && cargo build --release --quiet)
KEYS=$(mktemp -d /tmp/wscast-jwt.XXXXXX)
SPID=
cleanup() { [[ -n $SPID ]] && kill "$SPID" 2>/dev/null; rm -rf "$KEYS"; }
trap cleanup EXIT
"$BIN/loadgen" jwt-keys "$KEYS"

declare -A PER_CPU
for round in $(seq "$ROUNDS"); do
    for kind in none hs256 es256; do
        port=$((20000 + RANDOM % 10000))
        args=(--listen "127.0.0.1:$port" --mode echo --max-connections 50000 --no-commands --log-level warn)
        url="ws://127.0.0.1:$port/ws"
        case $kind in
        hs256) args+=(--auth-jwt-key "$KEYS/hs256.key") url="$url?token=$(cat "$KEYS/hs256.token")" ;;
        es256) args+=(--auth-jwt-key "$KEYS/es256.pem") url="$url?token=$(cat "$KEYS/es256.token")" ;;
        esac
        taskset -c 0 "$BIN/wscast" "${args[@]}" </dev/null >/dev/null 2>&1 &
        SPID=$!
        for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
        r=$(taskset -c 1 "$BIN/loadgen" handshake --url "$url" -c 32 --duration "$LOAD" \
            --server-pid "$SPID" 2>/dev/null | grep '^RESULT')
        kill "$SPID"; wait "$SPID" 2>/dev/null || true; SPID=
        per=$(sed -n 's/.* per_server_cpu_s=\([^ ]*\).*/\1/p' <<<"$r")
        failed=$(sed -n 's/.* failed=\([^ ]*\).*/\1/p' <<<"$r")
        PER_CPU[$kind]+="$per "
        printf 'round %s %-6s %8.0f handshakes per server CPU-s (failed %s)\n' "$round" "$kind" "$per" "$failed"
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
none=$(median <<<"${PER_CPU[none]}")
for kind in none hs256 es256; do
    m=$(median <<<"${PER_CPU[$kind]}")
    printf 'median %-6s %8.0f per server CPU-s = %.2fx of no key\n' "$kind" "$m" "$(awk -v a="$m" -v b="$none" 'BEGIN {print a / b}')"
done
