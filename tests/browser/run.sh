#!/usr/bin/env bash
# The browser client page in a real headless Chromium, driven over WebDriver.
#
#   bash tests/browser/run.sh                        # the test
#   bash tests/browser/run.sh --screenshot broadcast # retake tests/browser/screenshot-broadcast.png
#   bash tests/browser/run.sh --screenshot chat      # ... screenshot-chat.png (needs --mode chat)
#
# Sets up what it needs, each step skipped when already done: Debian's chromium,
# chromium-driver and openssl (apt-get, as root; openssl makes the TLS checks' throwaway
# certificate), selenium (requirements.txt) in tests/browser/.venv, and the release
# binary (unless WSCAST_BIN is set). Then test_page.py starts wscast on 127.0.0.1:0, loads
# the page, and checks it against the server (see that file). The test proper is bounded
# by BROWSER_TIMEOUT seconds (default 120); set-up has bounds of its own.
#
# Environment knobs (all optional):
#   WSCAST_BIN=PATH     test this binary instead of building the release one
#   BROWSER_TIMEOUT=SEC hard limit for test_page.py (default 120)
#   PYTHON=python3      interpreter used to create tests/browser/.venv
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VENV=$HERE/.venv
TIMEOUT=${BROWSER_TIMEOUT:-120}
export DEBIAN_FRONTEND=noninteractive
# selenium must never try to fetch a browser or a driver: both come from Debian.
export SE_OFFLINE=true

log() { printf '[browser] %s\n' "$*"; }
die() { printf '[browser] ERROR: %s\n' "$*" >&2; exit 1; }

# --- 1. Chromium, chromedriver and openssl from Debian --------------------
if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    log "using $(/usr/bin/chromium --version 2>/dev/null | head -n1)"
else
    [[ $(id -u) == 0 ]] || die "chromium or chromedriver missing: run as root, or apt-get install chromium chromium-driver"
    log "apt-get install chromium chromium-driver"
    timeout 300 apt-get update -qq || die "apt-get update failed"
    timeout 600 apt-get install -y -qq chromium chromium-driver >/dev/null ||
        die "apt-get install chromium chromium-driver failed"
    [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] || die "no /usr/bin/chromium or /usr/bin/chromedriver after apt-get"
fi

# The openssl CLI, for the throwaway certificate of the https/wss checks.
if command -v openssl >/dev/null; then
    log "using $(openssl version | head -n1)"
else
    [[ $(id -u) == 0 ]] || die "openssl missing: run as root, or apt-get install openssl"
    log "apt-get install openssl"
    timeout 300 apt-get update -qq || die "apt-get update failed"
    timeout 600 apt-get install -y -qq openssl >/dev/null || die "apt-get install openssl failed"
    command -v openssl >/dev/null || die "no openssl after apt-get install openssl"
fi

# --- 2. selenium in tests/browser/.venv ------------------------------------------
# shellcheck source=../python-venv.sh
source "$HERE/../python-venv.sh"
ensure_venv "$VENV" "$HERE/requirements.txt" selenium

# --- 3. the binary --------------------------------------------------------------
if [[ -n ${WSCAST_BIN:-} ]]; then
    [[ -x $WSCAST_BIN ]] || die "WSCAST_BIN=$WSCAST_BIN is not an executable file"
    BIN=$WSCAST_BIN
    log "using WSCAST_BIN=$BIN (no build)"
else
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet)
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/wscast
    [[ -x $BIN ]] || die "no binary at $BIN after cargo build --release"
fi

# --- 4. the test ----------------------------------------------------------------
# test_page.py starts and stops wscast itself (it must SIGTERM it and start it again on the
# same port); it runs in its own process group, so that on a time-out or an interrupt
# everything it started (wscast, chromedriver, chromium) goes with it.
CHILD=
cleanup() {
    if [[ -n $CHILD ]] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM -- "-$CHILD" 2>/dev/null || true
        for _ in $(seq 30); do kill -0 "$CHILD" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$CHILD" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "test_page.py (at most ${TIMEOUT}s)"
rc=0
setsid timeout --kill-after=5 "$TIMEOUT" "$VENV/bin/python" -u "$HERE/test_page.py" --bin "$BIN" "$@" </dev/null &
CHILD=$!
wait "$CHILD" || rc=$?
CHILD=
if [[ $rc == 124 || $rc == 137 ]]; then
    log "FAIL: test_page.py did not finish within ${TIMEOUT}s"
    echo "browser: 0 passed, 1 failed"
fi
exit "$rc"
