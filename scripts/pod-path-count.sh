#!/usr/bin/env bash
# Instructions the API server spends on each call of a pod's life, counted by callgrind:
# runs examples/pod_path_bench (create, bind, token, two status patches, events, graceful
# and final delete of PODS pods through the in-process client) and prints thousands of
# instructions per call, phase by phase. Counts repeat within about 1% between runs, where
# timings on this shared VM drift by 30%: use it to A/B a change to a request path.
#
#   scripts/pod-path-count.sh                 # builds the example, counts it
#   scripts/pod-path-count.sh OLD_BIN NEW_BIN # counts prebuilt pod_path_bench binaries
#
# PODS (default 300) sets the pods per phase. Needs valgrind (installed if missing).
# Not part of scripts/test.sh: it is a measuring tool, and takes about a minute per binary.
set -euo pipefail
cd "$(dirname "$0")/.."

pods=${PODS:-300}
if ! command -v valgrind >/dev/null; then
    apt-get install -y -q valgrind >/dev/null
fi
bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
    # Symbols kept: callgrind finds phase_marker by name, and the release profile strips.
    CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --quiet --example pod_path_bench
    bins=(target/release/examples/pod_path_bench)
fi

work=$(mktemp -d /tmp/skiff-podpath.XXXXXX)
trap 'rm -rf "$work"' EXIT

for i in "${!bins[@]}"; do
    out="$work/$i"
    mkdir -p "$out/data"
    # One profile dump per phase boundary (the example calls phase_marker at each).
    valgrind --tool=callgrind --dump-before=phase_marker \
        --callgrind-out-file="$out/cg.out" \
        "${bins[$i]}" "$out/data" "$pods" 8 >"$out/stdout" 2>"$out/stderr"
    rm -rf "$out/data"
done

python3 - "$work" "$pods" "${bins[@]}" <<'PY'
import glob, re, subprocess, sys

work, pods, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
calls_per_pod = {"events": 3}

def phase_counts(out):
    phases = [l.split()[1] for l in open(f"{out}/stderr") if l.startswith("phase_start")]
    counts = {}
    for i, phase in enumerate(phases):
        # Dump 1 is the setup; phase i runs between dumps 2i+1 and 2i+2.
        f = f"{out}/cg.out.{2 * i + 2}"
        total = next(int(l.split()[1]) for l in open(f) if l.startswith("totals:"))
        # A thread spinning on sled's lazy statics while another runs (valgrind runs
        # one thread at a time) is scheduling, not work: its count is left out.
        report = subprocess.run(
            ["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", f],
            capture_output=True, text=True).stdout
        for line in report.splitlines():
            if "sled::lazy::Lazy" in line and "deref" in line:
                total -= int(line.split()[0].replace(",", ""))
        counts[phase] = total / pods / calls_per_pod.get(phase, 1) / 1e3
    return counts

results = [phase_counts(f"{work}/{i}") for i in range(len(bins))]
print(f"{'k instructions per call':24}" + "".join(f"{b.split('/')[-1][:20]:>22}" for b in bins))
for phase in results[0]:
    print(f"{phase:24}" + "".join(f"{r.get(phase, 0):22.1f}" for r in results))
per_pod = [sum(v * calls_per_pod.get(p, 1) for p, v in r.items()) for r in results]
print(f"{'per pod':24}" + "".join(f"{v:22.1f}" for v in per_pod))
PY
