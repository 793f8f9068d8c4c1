#!/usr/bin/env bash
# Fuzzes every target (or those named) for the given number of seconds each, one after the
# other, with one process: `fuzz/run.sh SECONDS [TARGET...]`. Needs nightly and cargo-fuzz.
#
# Each target grows its own working corpus in fuzz/work/<target> (never committed), starting
# from the committed seeds in fuzz/corpus/<target>, and logs to fuzz/work/<target>.log. A crash
# stops the target and is saved in fuzz/artifacts/<target>/; the script then exits non-zero
# after the other targets ran. With KEEP_GOING=1, libFuzzer's fork mode records crashes and
# goes on (for long campaigns).
#
# Builds use release mode with debug assertions (integer overflow panics) and no sanitizer:
# the code fuzzed is safe Rust, where AddressSanitizer finds nothing more and halves the speed.
set -euo pipefail

cd "$(dirname "$0")"

if (($# < 1)) || ! [[ $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
seconds=$1
shift
if (($#)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

flags=(--sanitizer none --debug-assertions)
cargo +nightly fuzz build "${flags[@]}"

extra=()
if [[ ${KEEP_GOING:-} == 1 ]]; then
    extra=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
fi

failed=()
for target in "${targets[@]}"; do
    mkdir -p "work/$target" "corpus/$target"
    log="work/$target.log"
    echo "==> $target: ${seconds}s (log: fuzz/$log)"
    if cargo +nightly fuzz run "${flags[@]}" "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -dict=dict/mqtt.dict -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${extra[@]}" >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$target")
    fi
    # The last status line: executions, coverage (cov: edges, ft: features), corpus, speed.
    summary=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
    echo "    $status ${summary:-no status line}"
    if [[ $status == FAILED ]]; then
        grep -E -m 5 'panicked|ERROR|Test unit written' "$log" | sed 's/^/    /' || true
    fi
done

if ((${#failed[@]})); then
    echo "failed: ${failed[*]} (inputs in fuzz/artifacts/; see fuzz/README.md to reproduce)" >&2
    exit 1
fi
