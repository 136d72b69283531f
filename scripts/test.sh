#!/usr/bin/env bash
# Runs everything CI checks, in order: test dependencies, formatting, lints, the debug build,
# unit and end-to-end tests (nextest), and the static release build. Root is required: the
# end-to-end tests start real servers (and later agents with namespaces and mounts).
# Prints the time of each phase and stops at the first failing phase.
set -euo pipefail

cd "$(dirname "$0")/.."

die() { printf '[test] error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root; try: sudo $0"

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export SKIFF_TEST_BIN_DIR="${SKIFF_TEST_BIN_DIR:-/opt/skiff-test/bin}"

timings=()
total_start=$(date +%s)
phase() {
    local name="$1"
    shift
    printf '\n[test] === %s: %s\n' "$name" "$*" >&2
    local start end rc=0
    start=$(date +%s)
    "$@" || rc=$?
    end=$(date +%s)
    timings+=("$(printf '%-16s %5ss' "$name" "$((end - start))")")
    if [ "$rc" -ne 0 ]; then
        print_timings
        die "phase '$name' failed (exit $rc)"
    fi
}
print_timings() {
    printf '\n[test] phase timings:\n' >&2
    local t
    for t in "${timings[@]}"; do printf '[test]   %s\n' "$t" >&2; done
    printf '[test]   %-16s %5ss\n' total "$(($(date +%s) - total_start))" >&2
}

phase deps scripts/install-test-deps.sh
phase fmt cargo fmt --all -- --check
phase clippy cargo clippy --all-targets -- -D warnings
phase build cargo build --bins --tests
phase nextest cargo nextest run --no-fail-fast
phase static scripts/build-static.sh
print_timings
