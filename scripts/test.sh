#!/usr/bin/env bash
# Runs everything CI checks, in order: test dependencies, formatting, lints, the debug build,
# unit and end-to-end tests (nextest), and the static musl link (a quick profile; the release
# artifact itself is `scripts/build-static.sh`). Root is required: the
# end-to-end tests start real servers (and later agents with namespaces and mounts).
#
# deps, fmt, clippy and build stop the run when they fail (nothing after them can pass);
# a test failure still lets the static build run, so one CI run reports both. The script
# prints the time of each phase and ends with the test counts. SKIFF_TEST_KEEP_GOING=1 runs
# every phase whatever fails (the exit status still reports the failures).
set -euo pipefail

cd "$(dirname "$0")/.."

die() { printf '[test] error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root; try: sudo $0"

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export SKIFF_TEST_BIN_DIR="${SKIFF_TEST_BIN_DIR:-/opt/skiff-test/bin}"

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

timings=()
failed=()
total_start=$(date +%s)

# run_phase NAME CMD...: runs CMD, records its time, returns its exit code.
run_phase() {
    local name="$1"
    shift
    printf '\n[test] === %s: %s\n' "$name" "$*" >&2
    local start rc=0
    start=$(date +%s)
    "$@" || rc=$?
    timings+=("$(printf '%-8s %5ss  %s' "$name" "$(($(date +%s) - start))" \
        "$([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)")")")
    [ "$rc" -eq 0 ] || failed+=("$name")
    return "$rc"
}
summary() {
    printf '\n[test] phase timings:\n' >&2
    local t
    for t in "${timings[@]}"; do printf '[test]   %s\n' "$t" >&2; done
    printf '[test]   %-8s %5ss\n' total "$(($(date +%s) - total_start))" >&2
    # nextest's own closing line, repeated last so it is the run's final word.
    if [ -s "$logs/nextest.out" ]; then
        local line
        line="$(grep -E '^ *Summary \[' "$logs/nextest.out" | tail -1 || true)"
        [ -n "$line" ] && printf '%s\n' "$line"
    fi
    if [ "${#failed[@]}" -gt 0 ]; then
        printf '[test] FAILED phases: %s\n' "${failed[*]}" >&2
        exit 1
    fi
    printf '[test] all phases passed\n' >&2
}
# A hard phase ends the run when it fails (unless SKIFF_TEST_KEEP_GOING=1).
hard() {
    run_phase "$@" && return 0
    [ "${SKIFF_TEST_KEEP_GOING:-0}" = 1 ] && return 0
    summary
    exit 1
}

hard deps scripts/install-test-deps.sh
hard fmt cargo fmt --all -- --check
hard clippy cargo clippy --all-targets -- -D warnings
hard build cargo build --bins --tests
# pipefail makes the pipeline fail when nextest does; tee keeps the output for the summary.
run_phase nextest bash -o pipefail -c 'cargo nextest run --no-fail-fast 2>&1 | tee "$1"' \
    _ "$logs/nextest.out" || true
# The static musl link is checked with a quick profile; the release profile's whole-program
# optimisation alone would take most of CI's time (see scripts/build-static.sh).
run_phase static env SKIFF_STATIC_PROFILE=static-check scripts/build-static.sh || true
summary
