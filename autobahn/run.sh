#!/usr/bin/env bash
# Run the Autobahn TestSuite cases (sections 1-13) against `wscast --mode echo`
# with kosoku, a Python 3 runner of the real Autobahn case files.
#
#   bash autobahn/run.sh
#
# Environment knobs (all optional):
#   WSCAST_BIN=PATH        test this binary instead of building target/release/wscast
#   AUTOBAHN_CASES="9.* 1.1.1"   run only these cases (default: "cases" of fuzzingclient.json)
#   AUTOBAHN_EXCLUDE="9.3.*"     exclude these (default: "exclude-cases" of fuzzingclient.json)
#   AUTOBAHN_PARALLELISM=N  cases run at once (default 4)
#   AUTOBAHN_TIMEOUT=SEC    hard limit for all kosoku runs together (default 600)
#   AUTOBAHN_RESULTS=FILE   where the compact results go (default autobahn/results.json
#                           for the default selection, autobahn/reports/results.json otherwise)
#   PYTHON=python3          interpreter used to create autobahn/.venv
#   AUTOBAHN_TLS=1          serve over TLS (--tls-cert, a certificate made with openssl) and
#                           run kosoku through autobahn/tls_relay.py (kosoku has no TLS);
#                           default cases then 1-10, results autobahn/results-tls.json
#
# Writes the full reports to autobahn/reports/: the server's log wscast.log (stderr; the
# messages it prints on stdout are dropped), and
# per section a folder (1/, 2/, ... 13/) with kosoku.log and kosoku's report
# (index.json, index.html, one JSON + HTML page per case); and a compact, committable summary
# (case id -> behavior, behaviorClose, remoteCloseCode) to autobahn/results.json.
# Exits 0 only if every selected case ran and is OK or INFORMATIONAL, kosoku
# finished in time, and the server was still alive at the end.
set -euo pipefail

WS_PATH=/ws
START_TIMEOUT=10

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
VENV=$HERE/.venv
REPORT_DIR=$HERE/reports
SERVER_LOG=$REPORT_DIR/wscast.log
PARALLELISM=${AUTOBAHN_PARALLELISM:-4}
TIMEOUT=${AUTOBAHN_TIMEOUT:-600}
KOSOKU_VERSION=$(sed -n 's/^kosoku==//p' "$HERE/requirements.txt")

log() { printf '[autobahn] %s\n' "$*"; }
die() { printf '[autobahn] ERROR: %s\n' "$*" >&2; exit 1; }

# --- 1. kosoku in autobahn/.venv --------------------------------------------
# shellcheck source=../tests/python-venv.sh
source "$ROOT/tests/python-venv.sh"
ensure_venv "$VENV" "$HERE/requirements.txt" kosoku
PY=$VENV/bin/python

# --- 2. the binary -------------------------------------------------------------
if [[ -n ${WSCAST_BIN:-} ]]; then
    [[ -x $WSCAST_BIN ]] || die "WSCAST_BIN=$WSCAST_BIN is not an executable file"
    BIN=$WSCAST_BIN
    log "using WSCAST_BIN=$BIN (no build)"
else
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release)
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/wscast
    [[ -x $BIN ]] || die "no binary at $BIN after cargo build --release"
fi

# --- 3. case selection -----------------------------------------------------------
# kosoku has no working --spec yet, so the selection is read from the same
# fuzzingclient.json that real wstest uses: both tools run the same cases.
read_spec() { "$PY" -c 'import json, sys
print(" ".join(json.load(open(sys.argv[1])).get(sys.argv[2], [])))' "$HERE/fuzzingclient.json" "$1"; }
DEFAULT_SELECTION=1
if [[ -n ${AUTOBAHN_CASES:-}${AUTOBAHN_EXCLUDE:-} ]]; then DEFAULT_SELECTION=0; fi
TLS=${AUTOBAHN_TLS:-0}
DEFAULT_CASES=$(read_spec cases)
if [[ $TLS == 1 ]]; then
    # Over TLS: the RFC 6455 sections (compression is the same code either way).
    DEFAULT_CASES=$(tr ' ' '\n' <<<"$DEFAULT_CASES" | grep -vE '^1[23]\.' | tr '\n' ' ')
fi
read -r -a CASES <<<"${AUTOBAHN_CASES:-$DEFAULT_CASES}"
read -r -a EXCLUDE <<<"${AUTOBAHN_EXCLUDE:-$(read_spec exclude-cases)}"
SELECT=()
for c in "${CASES[@]}"; do SELECT+=(-i "$c"); done
for c in "${EXCLUDE[@]}"; do SELECT+=(-x "$c"); done
if [[ $DEFAULT_SELECTION == 1 && $TLS == 1 ]]; then
    RESULTS=${AUTOBAHN_RESULTS:-$HERE/results-tls.json}
elif [[ $DEFAULT_SELECTION == 1 ]]; then
    RESULTS=${AUTOBAHN_RESULTS:-$HERE/results.json}
else
    RESULTS=${AUTOBAHN_RESULTS:-$REPORT_DIR/results.json}
fi
log "cases: ${CASES[*]:-(all)}   excluded: ${EXCLUDE[*]:-(none)}"

# --- 4. start the server -----------------------------------------------------------
rm -rf "$REPORT_DIR"
mkdir -p "$REPORT_DIR"
SERVER_PID=
RELAY_PID=
STDIN_FIFO=$(mktemp -u "${TMPDIR:-/tmp}/wscast-stdin.XXXXXX")
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ -n $SERVER_PID ]]; then wait "$SERVER_PID" 2>/dev/null || true; fi
    if [[ -n $RELAY_PID ]]; then kill "$RELAY_PID" 2>/dev/null || true; wait "$RELAY_PID" 2>/dev/null || true; fi
    exec 3>&-
    rm -f "$STDIN_FIFO"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The server's stdin is a FIFO this shell holds open for writing and never
# writes to: a mode that reads stdin sees neither input nor EOF (CI has no stdin).
mkfifo "$STDIN_FIFO"
exec 3<>"$STDIN_FIFO"
TLS_ARGS=()
SCHEME=ws
if [[ $TLS == 1 ]]; then
    if ! command -v openssl >/dev/null; then
        # A fresh CI machine may lack it: install it as tests/browser/run.sh does.
        [[ $(id -u) == 0 ]] || die "AUTOBAHN_TLS=1 needs openssl: run as root, or apt-get install openssl"
        log "apt-get install openssl"
        DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq openssl >/dev/null ||
            die "apt-get install openssl failed"
    fi
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -keyout "$REPORT_DIR/key.pem" -out "$REPORT_DIR/cert.pem" -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 2>/dev/null || die "openssl could not make a certificate"
    TLS_ARGS=(--tls-cert "$REPORT_DIR/cert.pem" --tls-key "$REPORT_DIR/key.pem")
    SCHEME=wss
fi
log "starting $BIN --mode echo --listen 127.0.0.1:0 --path $WS_PATH ${TLS_ARGS[*]}"
# The messages it prints (stdout) are dropped: sections 9, 12 and 13 send gigabytes.
"$BIN" --mode echo --listen 127.0.0.1:0 --path "$WS_PATH" "${TLS_ARGS[@]}" <&3 >/dev/null 2>"$SERVER_LOG" &
SERVER_PID=$!

PORT=
for _ in $(seq $((START_TIMEOUT * 10))); do
    # strip ANSI colours, then take the port of the first "listening on ws://HOST:PORT/..."
    PORT=$(sed -E 's/\x1b\[[0-9;]*m//g' "$SERVER_LOG" |
        grep -oE "listening on $SCHEME://[^ /]+:[0-9]+" | head -n1 | grep -oE '[0-9]+$' || true)
    [[ -n $PORT ]] && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        tail -n 30 "$SERVER_LOG" >&2 || true
        die "the server exited before it was listening (log: $SERVER_LOG)"
    fi
    sleep 0.1
done
if [[ -z $PORT ]]; then
    tail -n 30 "$SERVER_LOG" >&2 || true
    die "no 'listening on ws://' line from the server within ${START_TIMEOUT}s (log: $SERVER_LOG)"
fi
URL=ws://127.0.0.1:$PORT$WS_PATH
if [[ $TLS == 1 ]]; then
    RELAY_LOG=$REPORT_DIR/relay.log
    "$PY" "$HERE/tls_relay.py" --upstream "127.0.0.1:$PORT" --ca "$REPORT_DIR/cert.pem" \
        >"$RELAY_LOG" 2>&1 3>&- &
    RELAY_PID=$!
    RELAY=
    for _ in $(seq 50); do
        RELAY=$(grep -oE 'relay listening on [0-9.]+:[0-9]+' "$RELAY_LOG" | grep -oE '[0-9]+$' || true)
        [[ -n $RELAY ]] && break
        sleep 0.1
    done
    [[ -n $RELAY ]] || die "the TLS relay did not start (log: $RELAY_LOG)"
    URL=ws://127.0.0.1:$RELAY$WS_PATH
    log "server pid $SERVER_PID listening on wss://127.0.0.1:$PORT$WS_PATH; kosoku connects through the TLS relay at $URL"
else
    log "server pid $SERVER_PID listening; kosoku connects to $URL"
fi

# --- 5. run the cases ------------------------------------------------------------
# One kosoku run per selected pattern (section), each into its own report folder:
# kosoku writes its report only when it finishes, so a server that hangs in 9.*
# still leaves the reports of the sections before it. All share one deadline.
log "kosoku -p $PARALLELISM, one run per pattern, ${TIMEOUT}s in all -> $REPORT_DIR/<section>/"
status=0
started=$SECONDS
deadline=$((SECONDS + TIMEOUT))
REPORT_DIRS=()
PATTERNS=("${CASES[@]}")
[[ ${#PATTERNS[@]} -gt 0 ]] || PATTERNS=("*")
XSELECT=()
for c in "${EXCLUDE[@]}"; do XSELECT+=(-x "$c"); done
for pat in "${PATTERNS[@]}"; do
    name=$(printf '%s' "$pat" | sed -E 's/\.\*$//; s/^\*$/all/; s/[^A-Za-z0-9]+/_/g')
    dir=$REPORT_DIR/$name
    REPORT_DIRS+=("$dir")
    left=$((deadline - SECONDS))
    if ((left <= 0)); then
        log "FAIL: $pat not run: the ${TIMEOUT}s budget is spent"
        status=1
        continue
    fi
    mkdir -p "$dir"
    t0=$SECONDS
    rc=0
    timeout --kill-after=10 "$left" "$VENV/bin/kosoku" -m fuzzingclient \
        -i "$pat" "${XSELECT[@]}" -p "$PARALLELISM" -o "$dir" "$URL" \
        >"$dir/kosoku.log" 2>&1 3>&- || rc=$?
    # kosoku: exit 0 = all passed (NON-STRICT counts as passed for it), 1 = some did not
    # (or a Python error, e.g. a pattern that matches no case: then no index.json)
    line=$(grep -oE '^[0-9]+ (of [0-9]+ )?cases (passed|failed)' "$dir/kosoku.log" | head -n1 || true)
    [[ -f $dir/index.json ]] || line="${line:+$line, }no report"
    log "$(printf '%-7s' "$pat") $(printf '%4s' $((SECONDS - t0)))s  exit $rc  ${line:-?}"
    case $rc in
        0) ;;
        1) if [[ ! -f $dir/index.json ]]; then
               log "FAIL: kosoku wrote no report for $pat:"; tail -n 3 "$dir/kosoku.log"; status=1
           fi ;;
        124 | 137) log "FAIL: $pat did not finish before the ${TIMEOUT}s deadline"; status=1 ;;
        *) log "FAIL: kosoku failed on $pat (exit $rc):"; tail -n 20 "$dir/kosoku.log"; status=1 ;;
    esac
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
done
elapsed=$((SECONDS - started))
log "kosoku runs took ${elapsed}s"

if kill -0 "$SERVER_PID" 2>/dev/null; then
    log "server still alive after the run"
else
    server_rc=0
    wait "$SERVER_PID" || server_rc=$?
    SERVER_PID=
    log "FAIL: the server died during the run (exit status $server_rc); last lines of $SERVER_LOG:"
    tail -n 30 "$SERVER_LOG" | sed 's/^/    /'
    status=1
fi

# --- 6. summary ------------------------------------------------------------------
echo
parse_rc=0
"$PY" "$HERE/parse_report.py" "${REPORT_DIRS[@]}" "${SELECT[@]}" \
    --results "$RESULTS" --tool "kosoku $KOSOKU_VERSION" || parse_rc=$?
[[ $parse_rc == 0 ]] || status=1

echo
log "reports: $REPORT_DIR/<section>/index.html   results: $RESULTS   cases took ${elapsed}s at -p $PARALLELISM"
if [[ $status == 0 ]]; then log "PASS"; else log "FAIL"; fi
exit "$status"
