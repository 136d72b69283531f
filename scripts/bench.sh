#!/usr/bin/env bash
# Benchmarks (not tests). Prints `name value unit` lines, with the anchor measured or stated
# in the same run so every figure can be read as a ratio.
#
#   scripts/bench.sh api        API server: creates (HTTPS and in-process), list, watch
#                               latency, GC cascade and namespace deletion of 10k, RSS, size
#   scripts/bench.sh runtime    containers: start-to-exit vs runc, pull vs skopeo, shim RSS
#   scripts/bench.sh pods       the server's node: start to node Ready, 100 pods (image
#                               present) create to Running/Ready vs runc (one at a time, and
#                               the same count at once) and the upstream SLO, all at once (4
#                               clients) and paced at POD_BENCH_RATE (10/s);
#                               server+node RSS idle and with the pods running; an agent
#                               joining from the same host: start to its node Ready, idle RSS
#   scripts/bench.sh scale      control plane at scale: 100 simulated nodes (`skiff sim-nodes`),
#                               a Deployment of 3000 replicas scheduled, run, rolled over and
#                               scaled to zero through the API; scheduler pods/s (as pods arrive,
#                               on a backlog of 3000 pending, and on that backlog with the
#                               simulated kubelets stopped, as upstream's scheduler_perf runs
#                               without kubelets) vs the 1000/s target, with the cores
#                               the server and the simulated nodes used meanwhile; pod
#                               startup p99 and API GET/PATCH p99 vs upstream's SLOs; server RSS;
#                               server and simulated-node CPU ms per pod (create to Running)
#   scripts/bench.sh all        every benchmark
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
[ "$(id -u)" = 0 ] || { echo "bench.sh: run as root" >&2; exit 1; }

# BENCH_BIN=path runs the benchmarks against another server binary (an A/B of two builds)
# with the clients already built (BENCH_NO_BUILD=1 skips building them).
if [ -z "${BENCH_NO_BUILD:-}" ]; then
    cargo build --release --quiet --bin skiff --example api_bench --example inproc_bench \
        --example webhook_bench --example pod_bench --example scale_bench
fi
bin=${BENCH_BIN:-target/release/skiff}

rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# once CLEANUP: the body of a bench's `trap 'once CLEANUP' RETURN EXIT`. EXIT as well as
# RETURN, because a failing step ends the script under `set -e` without a return; the traps
# are reset first, because a RETURN trap set in a function stays set and would fire again
# at later functions' returns. By EXIT the function's locals are gone, so what CLEANUP
# reads is global.
once() {
    trap - RETURN EXIT
    "$1"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

bench_api() {
    local dir port pid
    dir=$(mktemp -d /tmp/skiff-bench.XXXXXX)
    port=$(free_port)
    "$bin" server --data-dir "$dir/data" --https-listen-port "$port" --bind-address 127.0.0.1 \
        --write-kubeconfig "$dir/kubeconfig" --disable-agent --log "${SCALE_BENCH_LOG:-warn}" >"$dir/server.log" 2>&1 &
    pid=$!
    # EXIT too: a failing command ends the script under `set -e` without a RETURN (a missing
    # example left the server running). Expanded now: the locals are gone by EXIT.
    trap "trap - RETURN EXIT; kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf '$dir'" RETURN EXIT
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
    target/release/examples/api_bench "$dir/kubeconfig" 10000 8 api
    echo "server_loaded_rss_mb $(rss_mb $pid) MB"
    target/release/examples/api_bench "$dir/kubeconfig" 10000 8 controllers
    # The same creates as a user bound by a RoleBinding, 1,000 Roles/RoleBindings present.
    target/release/examples/api_bench "$dir/kubeconfig" 10000 8 rbac
    echo "server_after_controllers_rss_mb $(rss_mb $pid) MB"
    # Creates charged to a ResourceQuota (count/configmaps) in their namespace.
    target/release/examples/api_bench "$dir/kubeconfig" 10000 8 quota
    # What one no-op validating webhook (HTTPS on 127.0.0.1) adds to a create.
    target/release/examples/webhook_bench "$dir/kubeconfig" 2000
    # The same creates through the in-process client (its own store in a temp dir).
    mkdir -p "$dir/inproc"
    target/release/examples/inproc_bench "$dir/inproc" 10000 8
    echo "binary_mb $(awk -v b="$(stat -c %s "$bin")" 'BEGIN { printf "%.1f", b / 1048576 }') MB"
}

# percentiles FILE: p50 and p99 of one number per line (milliseconds).
percentiles() {
    python3 - "$1" <<'PY'
import sys
v = sorted(float(x) for x in open(sys.argv[1]) if x.strip())
pick = lambda p: v[min(len(v) - 1, round((len(v) - 1) * p))]
print(f"{pick(0.50):.2f} {pick(0.99):.2f}")
PY
}

# busybox_image DIR: a one-layer busybox image `bench/busybox:1` as a docker-save archive,
# DIR/image.tar (the rootfs is left in DIR/rootfs).
busybox_image() {
    local img="$1"
    mkdir -p "$img/rootfs"/{bin,etc,tmp,proc,sys,dev}
    cp /bin/busybox "$img/rootfs/bin/busybox"
    for a in sh true sleep; do ln -s busybox "$img/rootfs/bin/$a"; done
    echo 'root:x:0:0:root:/root:/bin/sh' >"$img/rootfs/etc/passwd"
    (
        cd "$img"
        tar -C rootfs -cf layer.tar .
        diff=$(sha256sum layer.tar | cut -d' ' -f1)
        printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff" >config.json
        cfg=$(sha256sum config.json | cut -d' ' -f1)
        mv config.json "$cfg.json"
        printf '[{"Config":"%s.json","RepoTags":["bench/busybox:1"],"Layers":["layer.tar"]}]' "$cfg" >manifest.json
        tar -cf image.tar manifest.json "$cfg.json" layer.tar
    )
}

bench_runtime() {
    scripts/install-test-deps.sh >/dev/null 2>&1
    local runs=100
    dir=$(mktemp -d /tmp/skiff-rbench.XXXXXX)
    data="$dir/data"
    export SKIFF_CGROUP_PARENT="skiff-bench-$$"
    S=("$bin" ctr --data-dir "$data")
    cleanup_runtime() {
        for id in $("${S[@]}" ps 2>/dev/null | awk 'NR > 1 { print $1 }'); do
            "${S[@]}" rm -f "$id" >/dev/null 2>&1 || true
        done
        for c in /sys/fs/cgroup/*/"$SKIFF_CGROUP_PARENT"; do [ -d "$c" ] && rmdir "$c" 2>/dev/null; done
        rm -rf "$dir" /tmp/skiff-runc-bench
    }
    trap 'once cleanup_runtime' RETURN EXIT

    local img="$dir/img"
    busybox_image "$img"
    "$bin" images import --data-dir "$data" "$img/image.tar" >/dev/null

    # (a) start-to-exit of /bin/true: the whole `skiff ctr run --rm` command vs `runc run`
    # on the same bundle (rootfs already unpacked for both).
    "${S[@]}" run -d --name bundle bench/busybox:1 true >/dev/null
    sleep 0.3
    for i in $(seq 5); do "${S[@]}" run --rm --name warm$i bench/busybox:1 true >/dev/null; done
    for i in $(seq $runs); do
        s=$(date +%s%N); "${S[@]}" run --rm --name t$i bench/busybox:1 true >/dev/null; e=$(date +%s%N)
        awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f\n", (e - s) / 1e6 }' 
    done >"$dir/skiff.ms"
    (
        cd "$data/agent/containers/bundle"
        for i in $(seq $runs); do
            s=$(date +%s%N); runc --root /tmp/skiff-runc-bench run -b . r$i >/dev/null 2>&1; e=$(date +%s%N)
            awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f\n", (e - s) / 1e6 }' 
        done
    ) >"$dir/runc.ms"
    read -r sp50 sp99 < <(percentiles "$dir/skiff.ms")
    read -r rp50 rp99 < <(percentiles "$dir/runc.ms")
    echo "runtime_start_p50_ms $sp50 ms"
    echo "runtime_start_p99_ms $sp99 ms"
    echo "runc_start_p50_ms $rp50 ms"
    echo "runc_start_p99_ms $rp99 ms"
    echo "runtime_vs_runc_ratio $(awk -v a="$sp50" -v b="$rp50" 'BEGIN { printf "%.2f", a / b }') ratio"

    # (c) shim RSS for a running container.
    "${S[@]}" run -d --name rss bench/busybox:1 sleep 60 >/dev/null
    sleep 0.5
    local shim_pid
    shim_pid=$(cat "$data/agent/containers/rss/shim.pid")
    echo "shim_rss_mb $(rss_mb "$shim_pid") MB"
    # Private part only: the rest is the binary's page cache, shared by every shim.
    echo "shim_private_mb $(awk '/^RssAnon:/ { printf "%.1f", $2 / 1024 }' "/proc/$shim_pid/status") MB"
    "${S[@]}" rm -f rss >/dev/null

    # (b) pull of a ~50 MB image from a local registry vs skopeo copy (in the same test run).
    SKIFF_BIN="$(realpath "$bin")" cargo test --quiet --test runtime_images pull_speed -- --ignored --nocapture 2>/dev/null \
        | grep -E '^(pull_50mb_s|skopeo_50mb_s|pull_vs_skopeo_ratio) '
}

bench_pods() {
    scripts/install-test-deps.sh >/dev/null 2>&1
    local port kport pods=${POD_BENCH_PODS:-100}
    pid="" agent_pid=""
    dir=$(mktemp -d /tmp/skiff-pbench.XXXXXX)
    data="$dir/data"
    bridge="skb$(($$ % 100000))"
    export SKIFF_CGROUP_PARENT="skiff-bench-$$"
    port=$(free_port)
    kport=$(free_port)
    cleanup_pods() {
        # Every step tolerates what is already gone: under `set -e` a failing one would end
        # the cleanup there.
        for p in $agent_pid $pid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
        for id in $("$bin" ctr --data-dir "$data" ps 2>/dev/null | awk 'NR > 1 { print $1 }'); do
            "$bin" ctr --data-dir "$data" rm -f "$id" >/dev/null 2>&1 || true
        done
        runc --root "$dir/runc" list -q 2>/dev/null | xargs -r -n1 runc --root "$dir/runc" delete -f || true
        for b in "$bridge" "${bridge}a"; do
            nft delete table ip "$b" 2>/dev/null || true
            ip link del "$b" 2>/dev/null || true
        done
        awk -v d="$dir" '$5 ~ "^" d { print $5 }' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
        for c in /sys/fs/cgroup/*/"$SKIFF_CGROUP_PARENT"{,-agent} /sys/fs/cgroup/"$SKIFF_CGROUP_PARENT"{,-agent}; do
            [ ! -d "$c" ] || find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        done
        rm -rf "$dir"
    }
    trap 'once cleanup_pods' RETURN EXIT

    busybox_image "$dir/img"
    "$bin" images import --data-dir "$data" "$dir/img/image.tar" >/dev/null

    # Start to node Ready: the server and its own node, from the exec of the binary.
    local t0
    t0=$(date +%s%N)
    "$bin" server --data-dir "$data" --https-listen-port "$port" --bind-address 127.0.0.1 \
        --write-kubeconfig "$dir/kubeconfig" --cluster-cidr 10.249.0.0/16 --pod-bridge "$bridge" \
        --kubelet-port "$kport" --pod-logs-dir "$dir/pod-logs" --log warn >"$dir/server.log" 2>&1 &
    pid=$!
    local node
    target/release/examples/pod_bench node-ready "$dir/kubeconfig" "$t0" | tee "$dir/ready.out" | grep -v '^node_name'
    node=$(awk '$1 == "node_name" { print $2 }' "$dir/ready.out")
    echo "k3s_start_to_ready_s_published 20 s"
    sleep 2
    echo "server_with_node_idle_rss_mb $(rss_mb $pid) MB"

    # Anchor: runc creating and starting the same container detached (no network, no API).
    mkdir -p "$dir/bundle"
    (
        cd "$dir/bundle"
        runc spec
        python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["root"] = {"path": "../img/rootfs", "readonly": True}
c["process"]["args"] = ["sleep", "3600"]
c["process"]["terminal"] = False
json.dump(c, open("config.json", "w"))
PY
        for i in $(seq 20); do
            s=$(date +%s%N)
            runc --root "$dir/runc" run -d --bundle . "pb$i" >/dev/null 2>&1 </dev/null
            e=$(date +%s%N)
            awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f\n", (e - s) / 1e6 }'
            runc --root "$dir/runc" delete -f "pb$i" >/dev/null 2>&1
        done
    ) >"$dir/runc.ms"
    read -r rp50 rp99 < <(percentiles "$dir/runc.ms")
    echo "runc_run_detached_p50_ms $rp50 ms"
    echo "runc_run_detached_p99_ms $rp99 ms"
    echo "upstream_slo_pod_startup_p99_ms 5000 ms"

    # Anchor for the burst: $pods `runc run -d` started at once, each timed from the common
    # start to its own return (as the pods are from their creation to Running). runc does no
    # pulling, networking beyond a fresh netns, API or status work, so this is a floor for
    # what the same machine can start in a burst, not a like-for-like race.
    (
        cd "$dir/bundle"
        start=$(date +%s%N)
        for i in $(seq "$pods"); do
            (
                runc --root "$dir/runc" run -d --bundle . "pbb$i" >/dev/null 2>&1 </dev/null
                e=$(date +%s%N)
                awk -v s="$start" -v e="$e" 'BEGIN { printf "%.3f\n", (e - s) / 1e6 }'
            ) &
        done
        wait
    ) >"$dir/runc-burst.ms"
    runc --root "$dir/runc" list -q 2>/dev/null | xargs -r -n1 runc --root "$dir/runc" delete -f
    local rbp50 rbp99
    read -r rbp50 rbp99 < <(percentiles "$dir/runc-burst.ms")
    echo "runc_burst_${pods}_p50_ms $rbp50 ms"
    echo "runc_burst_${pods}_p99_ms $rbp99 ms"

    # $pods pods pinned to the node, created by 4 clients; RSS read while they all run.
    local pause="$dir/pause"
    POD_BENCH_PAUSE_FILE="$pause" env -u POD_BENCH_RATE target/release/examples/pod_bench "$dir/kubeconfig" \
        bench/busybox:1 "$pods" 4 "$node" >"$dir/pods.out" &
    local bench_pid=$!
    until [ -s "$pause" ] || ! kill -0 $bench_pid 2>/dev/null; do sleep 0.1; done
    cat "$dir/pods.out"
    if [ -s "$pause" ]; then
        echo "server_with_${pods}_pods_rss_mb $(rss_mb $pid) MB"
        local shims=0 p
        for p in $(pgrep -f "__shim $data" || true); do
            shims=$(awk -v t="$shims" '/^RssAnon:/ { print t + $2 }' "/proc/$p/status" 2>/dev/null || echo "$shims")
        done
        echo "shims_private_total_mb $(awk -v k="$shims" 'BEGIN { printf "%.1f", k / 1024 }') MB"
        rm -f "$pause"
    fi
    if ! wait $bench_pid; then
        echo "pod_bench failed; server log tail:" >&2
        tail -n 20 "$dir/server.log" >&2
        return 1
    fi
    grep '^pods_all_deleted' "$dir/pods.out"
    local p99
    p99=$(awk '$1 == "pod_create_to_running_p99_ms" { print $2 }' "$dir/pods.out")
    echo "pod_startup_p99_vs_slo_ratio $(awk -v a="$p99" 'BEGIN { printf "%.3f", a / 5000 }') ratio"
    echo "pod_startup_p99_vs_runc_p99_ratio $(awk -v a="$p99" -v b="$rp99" 'BEGIN { printf "%.1f", a / b }') ratio"
    echo "pod_burst_p99_vs_runc_burst_p99_ratio $(awk -v a="$p99" -v b="$rbp99" 'BEGIN { printf "%.2f", a / b }') ratio"

    # The same pods created at a steady rate: each pod's own start latency, without the
    # queue a burst of 100 builds on two cores.
    local rate=${POD_BENCH_RATE:-10}
    # It starts right after the burst's deletion: the node is still tearing the burst down
    # (that once held new pods ~3 s behind the veth deletions; see src/network/node.rs).
    echo "paced_rate_per_s $rate pods/s"
    POD_BENCH_RATE="$rate" target/release/examples/pod_bench "$dir/kubeconfig" \
        bench/busybox:1 "$pods" 1 "$node" >"$dir/paced.out" || {
        echo "paced pod_bench failed; server log tail:" >&2
        tail -n 20 "$dir/server.log" >&2
        return 1
    }
    grep -E '^paced_pod_create_to_running|^paced_pods_all_running' "$dir/paced.out"

    # An agent joining the server from the same host as a second node (its own bridge,
    # kubelet port, cgroup parent and data dir): its exec to its Node Ready, then its idle
    # RSS alone.
    local t1
    t1=$(date +%s%N)
    SKIFF_CGROUP_PARENT="$SKIFF_CGROUP_PARENT-agent" "$bin" agent --server "https://127.0.0.1:$port" \
        --token "$(cat "$data/server/token")" --data-dir "$dir/agent-data" --node-name bench-agent \
        --pod-bridge "${bridge}a" --node-cluster-cidr 10.249.0.0/16 --kubelet-port "$(free_port)" \
        --pod-logs-dir "$dir/agent-pod-logs" \
        --log warn >"$dir/agent.log" 2>&1 &
    agent_pid=$!
    target/release/examples/pod_bench node-ready "$dir/kubeconfig" "$t1" bench-agent | grep -v '^node_name' || {
        echo "the agent did not get Ready; its log tail:" >&2
        tail -n 20 "$dir/agent.log" >&2
        return 1
    }
    echo "agent_start_to_ready_target_ms 2000 ms"
    sleep 2
    echo "agent_idle_rss_mb $(rss_mb $agent_pid) MB"
    echo "agent_idle_rss_target_mb 32 MB"
    echo "k3s_agent_rss_mb_published 275 MB"
    p99=$(awk '$1 == "paced_pod_create_to_running_p99_ms" { print $2 }' "$dir/paced.out")
    echo "paced_pod_startup_p99_vs_runc_p99_ratio $(awk -v a="$p99" -v b="$rp99" 'BEGIN { printf "%.1f", a / b }') ratio"
}

bench_scale() {
    local port nodes=${SCALE_BENCH_NODES:-100} replicas=${SCALE_BENCH_REPLICAS:-3000}
    pid="" sim=""
    dir=$(mktemp -d /tmp/skiff-sbench.XXXXXX)
    # The simulated kubelets' files (pod volumes, logs) go to memory: on a real cluster they
    # are written on other hosts, and on this disk's ext4 their inode churn cost the
    # simulation more CPU than its kubelet code, CPU taken from the control plane measured.
    sim_dir=$(mktemp -d /dev/shm/skiff-sim.XXXXXX)
    port=$(free_port)
    cleanup_scale() {
        # The load generator stops the simulated nodes for one phase: a stopped process
        # would hold its SIGTERM.
        # A process that already died (a server that failed to start) must not stop the
        # cleanup under `set -e`.
        [ -z "$sim" ] || kill -CONT "$sim" 2>/dev/null || true
        for p in $sim $pid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
        rm -rf "$dir" "$sim_dir"
    }
    trap 'once cleanup_scale' RETURN EXIT

    # No node of its own: every pod runs on a simulated node.
    "$bin" server --data-dir "$dir/data" --https-listen-port "$port" --bind-address 127.0.0.1 \
        --write-kubeconfig "$dir/kubeconfig" --disable-agent --log "${SCALE_BENCH_LOG:-warn}" >"$dir/server.log" 2>&1 &
    pid=$!
    until [ -s "$dir/data/server/token" ] && [ -s "$dir/kubeconfig" ]; do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$dir/server.log" >&2; return 1; }
        sleep 0.1
    done
    SKIFF_URL="https://127.0.0.1:$port" SKIFF_TOKEN="$(cat "$dir/data/server/token")" \
        "$bin" sim-nodes --count "$nodes" --data-dir "$sim_dir" >"$dir/sim.log" 2>&1 &
    sim=$!

    local pause="$dir/pause"
    SCALE_BENCH_PAUSE_FILE="$pause" SCALE_BENCH_SIM_PID="$sim" SCALE_BENCH_SERVER_PID="$pid" target/release/examples/scale_bench "$dir/kubeconfig" \
        "$nodes" "$replicas" >"$dir/scale.out" &
    local bench_pid=$!
    until [ -s "$pause" ] || ! kill -0 $bench_pid 2>/dev/null; do sleep 0.2; done
    cat "$dir/scale.out"
    local shown
    shown=$(wc -l <"$dir/scale.out")
    if [ -s "$pause" ]; then
        echo "server_with_${replicas}_pods_rss_mb $(rss_mb $pid) MB"
        echo "server_rss_target_mb 400 MB"
        echo "sim_nodes_${nodes}_with_${replicas}_pods_rss_mb $(rss_mb $sim) MB"
        rm -f "$pause"
    fi
    if ! wait $bench_pid; then
        echo "scale_bench failed; server and sim-nodes log tails:" >&2
        tail -n 20 "$dir/server.log" "$dir/sim.log" >&2
        return 1
    fi
    # Everything after the pause: the rolling update, the API probes, scale to zero and the
    # scheduler's backlog.
    tail -n +"$((shown + 1))" "$dir/scale.out"
    local p99
    p99=$(awk '$1 == "pod_created_to_running_p99_ms" { print $2 }' "$dir/scale.out")
    echo "scale_pod_startup_p99_vs_slo_ratio $(awk -v a="$p99" 'BEGIN { printf "%.3f", a / 5000 }') ratio"
    # The run ends with the backlog phase, so this is again $replicas pods, plus the history
    # (events, three rollouts' replica sets) of the whole run.
    echo "server_rss_at_end_${replicas}_pods_mb $(rss_mb $pid) MB"
    # With SCALE_BENCH_LOG="warn,skiff::apiserver=debug" the server logs every request with
    # its time: the p99 of all of them, the cluster's own calls included, as upstream's API
    # latency SLO counts them (watches and exec-like streams left out). The logging itself
    # costs CPU, so these runs are not the ones to compare throughput with.
    if grep -q ' ms=' "$dir/server.log"; then
        server_side_latency "$(awk '$1 ~ /_kubelets_stopped_at_unix_s$/ { print $2 }' "$dir/scale.out")" \
            <"$dir/server.log"
    fi
}

# Reads the server's per-request debug lines; prints the p50/p99 of reads and writes and the
# slowest (method, resource) by p99, with the p99 of the time each spent running its own code
# (busy) and how many times it was polled (each poll after the first followed a wait).
# $1, if set, is when the load generator stopped the simulated kubelets (unix seconds): a
# request in flight then waited for a stopped client, so it is left out (and counted).
server_side_latency() {
    python3 -c '
import datetime, re, sys
line = re.compile(r"method=(\w+) path=(\S+) watch=(\w+) status=\d+ ms=([0-9.]+)(?: queued_ms=([0-9.]+))?(?: busy_ms=([0-9.]+) polls=(\d+))?")
by, busy, sli = {}, {}, {}
stamp = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z")
first = last = None
stopped = float(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] else None
left_out = 0
total_ms = total_busy_ms = 0.0
for l in sys.stdin:
    m = line.search(l)
    if not m or m.group(3) == "true":
        continue
    method, path, ms = m.group(1), m.group(2), float(m.group(4))
    t = stamp.match(l)
    if t:
        t = datetime.datetime.fromisoformat(t.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp()
        if stopped is not None and t - ms / 1000 < stopped < t:
            left_out += 1
            continue
        first = t if first is None else first
        last = t
    queued = float(m.group(5) or 0)
    total_ms += ms
    total_busy_ms += float(m.group(6) or 0)
    parts = [p for p in path.split("/") if p]
    if "watch" in parts or parts[-1:] == ["exec"]:
        continue
    # /api/v1/namespaces/NS/pods/NAME/status -> pods/status
    if "namespaces" in parts and len(parts) > parts.index("namespaces") + 2:
        parts = parts[parts.index("namespaces") + 2:]
    else:
        parts = parts[2:] if parts[:1] == ["api"] else parts[3:]
    resource = parts[0] + ("/" + parts[2] if len(parts) > 2 else "") if parts else "-"
    by.setdefault((method, resource), []).append(ms)
    # The SLI upstream states its latency SLO in (apiserver_request_sli_duration_seconds)
    # leaves out the wait for a seat of the priority level; both are shown.
    sli.setdefault((method, resource), []).append(ms - queued)
    if m.group(6):
        busy.setdefault((method, resource), []).append((float(m.group(6)), int(m.group(7))))
def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]
reads = [x for (m, _), v in by.items() if m == "GET" for x in v]
writes = [x for (m, _), v in by.items() if m != "GET" for x in v]
sli_reads = [x for (m, _), v in sli.items() if m == "GET" for x in v]
sli_writes = [x for (m, _), v in sli.items() if m != "GET" for x in v]
for name, v, s in (("read", reads, sli_reads), ("write", writes, sli_writes)):
    if v:
        print(f"server_side_{name}_requests {len(v)} requests")
        print(f"server_side_{name}_p50_ms {pct(v, 0.5):.1f} ms")
        print(f"server_side_{name}_p99_ms {pct(v, 0.99):.1f} ms")
        print(f"server_side_sli_{name}_p99_ms {pct(s, 0.99):.1f} ms")
# Little: requests in flight on average = summed latency / wall time; and the share of that
# latency spent running request code rather than waiting.
if first is not None and last > first:
    print(f"server_side_mean_requests_in_flight {total_ms / 1000 / (last - first):.1f} requests")
if stopped is not None:
    print(f"server_side_left_out_in_flight_when_kubelets_stopped {left_out} requests")
if total_busy_ms:
    print(f"server_side_busy_share_of_latency {100 * total_busy_ms / total_ms:.1f} %")
worst = sorted(((pct(v, 0.99), m, r, len(v)) for (m, r), v in by.items() if len(v) >= 100), reverse=True)[:5]
for p99, m, r, n in worst:
    key = m + "_" + r.replace("/", "_")
    print(f"server_side_p99_ms_{key} {p99:.1f} ms ({n} requests)")
    print(f"server_side_sli_p99_ms_{key} {pct(sli[(m, r)], 0.99):.1f} ms")
    # How much of that was running its own code, and how often it waited in between.
    if (m, r) in busy:
        b = busy[(m, r)]
        print(f"server_side_busy_p99_ms_{key} {pct([x for x, _ in b], 0.99):.2f} ms")
        print(f"server_side_polls_mean_{key} {sum(p for _, p in b) / len(b):.1f} polls")
' "$@"
}

case "$what" in
    api) bench_api ;;
    runtime) bench_runtime ;;
    pods) bench_pods ;;
    scale) bench_scale ;;
    all) bench_api; bench_runtime; bench_pods; bench_scale ;;
    *) echo "usage: $0 api|runtime|pods|scale|all" >&2; exit 2 ;;
esac
