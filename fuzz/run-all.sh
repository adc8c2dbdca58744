#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), from its checked-in seeds
# (fuzz/seeds/TARGET, real inputs) and the working corpus (fuzz/corpus/TARGET, where
# libFuzzer keeps what it finds; not checked in). Prints the executions of each run
# and fails, after running them all, if any target failed; a failing input is printed
# in base64, as the artifacts directory may not survive a CI job.
#
#   bash fuzz/run-all.sh [SECONDS]        # needs the nightly toolchain and cargo-fuzz
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-60}"

targets_text="$(cargo +nightly fuzz list)"
mapfile -t targets <<<"$targets_text"
if [[ ${#targets[@]} -eq 0 || -z "${targets[0]}" ]]; then
    echo "error: cargo fuzz list found no fuzz targets" >&2
    exit 1
fi
cargo +nightly fuzz build

failed=()
summary=()
for target in "${targets[@]}"; do
    echo "==> ${target} (${seconds}s)"
    mkdir -p "fuzz/corpus/${target}" "fuzz/seeds/${target}"
    log="$(mktemp)"
    if cargo +nightly fuzz run "$target" "$PWD/fuzz/corpus/${target}" "$PWD/fuzz/seeds/${target}" \
        -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | tee "$log" | tail -n 3; then
        runs="$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -n 1 | grep -Eo '[0-9]+' || echo '?')"
        summary+=("${target}: ${runs} executions in ${seconds}s")
    else
        failed+=("$target")
        summary+=("${target}: FAILED")
        for artifact in fuzz/artifacts/"$target"/*; do
            [[ -f "$artifact" ]] || continue
            echo "--- ${artifact} (base64):"
            base64 "$artifact"
        done
    fi
    rm -f "$log"
done

printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "FAILED fuzz targets: ${failed[*]}" >&2
    echo "Reproduce with: cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>" >&2
    exit 1
fi
