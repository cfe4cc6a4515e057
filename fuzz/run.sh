#!/usr/bin/env bash
# Builds and runs every fuzz target of wscast's protocol layer on stable Rust.
#
#   fuzz/run.sh [SECONDS_PER_TARGET]      (default 30)
#
# Environment:
#   FUZZ_TARGETS="frame_header handshake"  run only these targets (default: all of them)
#   FUZZ_SANITIZER=address                 build with AddressSanitizer; stable rustc accepts
#                                          the nightly -Zsanitizer flag only with
#                                          RUSTC_BOOTSTRAP=1, which this then sets.
#                                          Default: none (no nightly flag at all).
#
# Each target runs in place on fuzz/corpus/<target>/: the committed seed-* files plus
# whatever the fuzzer adds (gitignored), so the corpus grows from one run to the next.
# Crash inputs go to fuzz/artifacts/<target>/ (gitignored); libFuzzer logs to
# fuzz/target/fuzz-logs/<target>.log. Exits non-zero if any target crashed.
set -euo pipefail

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi
cd "$(dirname "$0")"

targets="${FUZZ_TARGETS:-frame_header message_assembler handshake connection chat_commands ws_url resume_message deflate_offer inflate_message redis_reply redis_session}"
sanitizer="${FUZZ_SANITIZER:-none}"
build_dir=()
if [ "$sanitizer" != none ]; then
    # cargo-fuzz passes -Zsanitizer=...; stable rustc takes -Z flags only when bootstrapping.
    export RUSTC_BOOTSTRAP=1
    # Its own build directory, so switching sanitizers does not rebuild everything.
    build_dir=(--target-dir "target/sanitizer-$sanitizer")
fi

# The largest input each target is given: connection needs room for a handshake and a
# message near the 64 KiB limit; inflate_message for several messages of up to its
# 4 KiB limit; a frame header is at most 14 bytes.
max_len() {
    case "$1" in
        frame_header) echo 64 ;;
        message_assembler) echo 16384 ;;
        inflate_message) echo 16384 ;;
        handshake) echo 16384 ;;
        connection) echo 65536 ;;
        *) echo 4096 ;;
    esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi
echo "== $(cargo fuzz --version), $(rustc --version), sanitizer: $sanitizer"

echo "== building: cargo fuzz build -s $sanitizer"
cargo fuzz build -s "$sanitizer" "${build_dir[@]}"

logs=target/fuzz-logs
mkdir -p "$logs"
summary=()
failed=()
for target in $targets; do
    mkdir -p "corpus/$target" "artifacts/$target"
    log="$logs/$target.log"
    echo "== fuzzing $target for ${seconds}s (log: fuzz/$log)"
    status=0
    cargo fuzz run -s "$sanitizer" "${build_dir[@]}" "$target" "corpus/$target" -- \
        -max_total_time="$seconds" \
        -max_len="$(max_len "$target")" \
        -rss_limit_mb=2048 \
        -timeout=10 \
        -print_final_stats=1 \
        >"$log" 2>&1 || status=$?

    # libFuzzer's closing stats, and the corpus size from its last status line.
    # (A crash while loading the corpus leaves no status line: hence `|| true`.)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1 || true)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1 || true)
    corpus=$(grep -aoE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n1 | sed 's/corp: //' || true)
    line=$(printf '%-18s executions %-11s exec/s %-8s corpus %s' \
        "$target" "${runs:-?}" "${rate:-?}" "${corpus:-?}")
    if [ "$status" -ne 0 ]; then
        line="$line   CRASHED (exit $status)"
        failed+=("$target")
        echo "!! $target crashed; the input and the panic:"
        { grep -a -m1 -A3 "panicked at" "$log"; grep -aE "ERROR: libFuzzer|Test unit written" "$log"; } |
            cut -c1-400 || true
    fi
    summary+=("$line")
done

echo
echo "== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "== crashed: ${failed[*]} (inputs in fuzz/artifacts/<target>/)"
    exit 1
fi
