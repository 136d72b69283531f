#!/usr/bin/env bash
# Benchmarks (not tests). Prints `name value unit` lines, with the anchor measured or stated
# in the same run so every figure can be read as a ratio.
#
#   scripts/bench.sh api        API server: creates, list, watch latency, RSS, binary size
#   scripts/bench.sh all        every benchmark
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
[ "$(id -u)" = 0 ] || { echo "bench.sh: run as root" >&2; exit 1; }

cargo build --release --quiet --bin skiff --example api_bench
bin=target/release/skiff

rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

bench_api() {
    local dir port pid
    dir=$(mktemp -d /tmp/skiff-bench.XXXXXX)
    port=$(free_port)
    "$bin" server --data-dir "$dir/data" --https-listen-port "$port" --bind-address 127.0.0.1 \
        --write-kubeconfig "$dir/kubeconfig" --disable-agent --log warn >"$dir/server.log" 2>&1 &
    pid=$!
    trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' RETURN
    local start=$SECONDS
    until curl -sk "https://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
        if ! kill -0 $pid 2>/dev/null || [ $((SECONDS - start)) -gt 20 ]; then
            echo "server did not start:" >&2; cat "$dir/server.log" >&2; return 1
        fi
        sleep 0.05
    done
    sleep 2
    echo "server_idle_rss_mb $(rss_mb $pid) MB"
    # Anchor for write latency: one durable 4 KiB write (O_DSYNC) on the same disk, now.
    local dd_s
    dd_s=$(dd if=/dev/zero of="$dir/fsync.probe" bs=4k count=200 oflag=dsync 2>&1 | awk '/copied/ { print $(NF-3) }')
    echo "disk_dsync_write_ms $(awk -v s="$dd_s" 'BEGIN { printf "%.2f", s * 1000 / 200 }') ms"
    rm -f "$dir/fsync.probe"
    target/release/examples/api_bench "$dir/kubeconfig" 10000 8
    echo "server_loaded_rss_mb $(rss_mb $pid) MB"
    echo "binary_mb $(awk -v b="$(stat -c %s "$bin")" 'BEGIN { printf "%.1f", b / 1048576 }') MB"
}

case "$what" in
    api) bench_api ;;
    all) bench_api ;;
    *) echo "usage: $0 api|all" >&2; exit 2 ;;
esac
