#!/usr/bin/env bash
# Operations: GET /metrics scraped and parsed by Prometheus's own Python client, GET
# /healthz, socket activation (a listening socket passed the way systemd passes it) and
# the journald log format. See test_ops.py.
#
#   bash tests/ops/run.sh
#
# Sets up prometheus-client (requirements.txt) in tests/ops/.venv and builds the release
# binary (unless WSCAST_BIN is set). Everything talks to 127.0.0.1 only; the test is
# bounded by OPS_TIMEOUT seconds (default 60).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=$HERE/.venv
TIMEOUT=${OPS_TIMEOUT:-60}

log() { printf '[ops] %s\n' "$*"; }
die() { printf '[ops] ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=../python-venv.sh
source "$HERE/../python-venv.sh"
ensure_venv "$VENV" "$HERE/requirements.txt" prometheus_client

if [[ -n ${WSCAST_BIN:-} ]]; then
    BIN=$WSCAST_BIN
else
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet)
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/wscast
fi
[[ -x $BIN ]] || die "no wscast binary at $BIN"

log "test_ops.py against $BIN"
timeout "$TIMEOUT" "$VENV/bin/python" "$HERE/test_ops.py" "$BIN"
