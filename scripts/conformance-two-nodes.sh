#!/usr/bin/env bash
# Runs ../shared/conformance.sh against a two-node cluster: the fresh `skiff server` (with its
# own node) that script starts, plus a `skiff agent` joined as a second host. Some specs
# need two schedulable nodes: on one, "Daemon set should rollback without unnecessary
# restarts" fails with "Conformance test suite needs a cluster with at least 2 nodes".
#
#   scripts/conformance-images.sh && export KUBE_TEST_REPO_LIST=/tmp/skiff-e2e-images/repo-list.yaml
#   FOCUS='\[sig-apps\].*\[Conformance\]' scripts/conformance-two-nodes.sh
#
# The agent runs in a network namespace of its own (veth 10.254.250.1 host end, .2 its
# end), as another machine would: its own bridge, NAT table and pod addresses. The shared
# script binds the server to 127.0.0.1, so the host end forwards the server's port (and
# the image registry's, REGISTRY_PORT, default 5123, reached through a registries.yaml
# mirror) to loopback; the server's certificate names the host end (--tls-san).
# There is no pod network between nodes yet: the script routes each node's podCIDR over the
# veth (the namespace has no default route, so nothing it sends leaves the machine), for
# the specs that reach pods through the API server's proxy.
# Env: as conformance.sh (FOCUS, SKIP, OUT, ...); the agent's log is OUT/agent-b.log.
# Everything the agent made (containers, cgroups, mounts, the namespace) is removed at exit.
set -u
cd "$(dirname "$0")/.."
NS=skiff-conf-b HOST_IP=10.254.250.1 NODE_IP=10.254.250.2 REGISTRY_PORT=${REGISTRY_PORT:-5123}
AGENT_DIR=/tmp/skiff-conformance-agent-b CGROUP=skiff-conf-b
export OUT=${OUT:-/tmp/conformance/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
[ -x target/release/skiff ] || { echo "build skiff first: cargo build --release"; exit 1; }
agent="" forwarders=""

cleanup() {
    [ -z "$agent" ] || { kill -KILL "$agent"; wait "$agent"; } 2>/dev/null
    for f in $forwarders; do kill "$f" 2>/dev/null; done
    # The containers' processes (shims and their children sit in the node's cgroups or
    # name its data dir), then the emptied cgroups, the mounts, the namespace.
    for _ in 1 2 3; do
        find /sys/fs/cgroup/*/"$CGROUP" /sys/fs/cgroup/"$CGROUP" -name cgroup.procs \
            -exec cat {} + 2>/dev/null | sort -u | xargs -r kill -KILL 2>/dev/null
        pkill -KILL -f "$AGENT_DIR" 2>/dev/null
        sleep 0.3
    done
    for d in /sys/fs/cgroup/*/"$CGROUP" /sys/fs/cgroup/"$CGROUP"; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    done
    awk -v r="$AGENT_DIR" 'index($5, r) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        xargs -r -n1 umount -l 2>/dev/null
    # With the namespace go its veth and the host's route over it.
    ip netns del "$NS" 2>/dev/null
    rm -rf "$AGENT_DIR"
    return 0
}
cleanup
trap cleanup EXIT

# forward PORT: the host end's PORT to 127.0.0.1:PORT, until killed.
forward() {
    python3 - "$HOST_IP" "$1" <<'PY' &
import socket, sys, threading
host, port = sys.argv[1], int(sys.argv[2])
def pipe(a, b):
    try:
        while (data := a.recv(65536)):
            b.sendall(data)
    except OSError:
        pass
    for s in (a, b):
        try: s.shutdown(socket.SHUT_RDWR)
        except OSError: pass
srv = socket.create_server((host, port), reuse_port=False)
while True:
    c, _ = srv.accept()
    try:
        u = socket.create_connection(("127.0.0.1", port))
    except OSError:
        c.close(); continue
    for a, b in ((c, u), (u, c)):
        threading.Thread(target=pipe, args=(a, b), daemon=True).start()
PY
    forwarders="$forwarders $!"
}

ip netns add "$NS"
ip link add skconfb type veth peer name eth0 netns "$NS"
ip addr add "$HOST_IP/30" dev skconfb
ip link set skconfb up
ip netns exec "$NS" sh -c "ip addr add $NODE_IP/30 dev eth0 && ip link set eth0 up && ip link set lo up"
mkdir -p "$AGENT_DIR"
printf 'mirrors:\n  "127.0.0.1:%s":\n    endpoint:\n      - "http://%s:%s"\n' \
    "$REGISTRY_PORT" "$HOST_IP" "$REGISTRY_PORT" > "$AGENT_DIR/registries.yaml"
forward "$REGISTRY_PORT"

existing=$(ls -d /tmp/skiff-conformance.* 2>/dev/null)
SKIFF_ARGS="--tls-san $HOST_IP ${SKIFF_ARGS:-}" bash ../shared/conformance.sh &
run=$!
# The server's data dir is the one that was not there before; join once it has a token.
while :; do
    data=$(ls -dt /tmp/skiff-conformance.* 2>/dev/null | head -1)
    if [ -n "$data" ] && ! grep -qxF "$data" <<<"$existing" &&
        [ -s "$data/kubeconfig" ] && [ -s "$data/lib/server/token" ]; then break; fi
    kill -0 "$run" 2>/dev/null || { wait "$run"; exit; }
    sleep 0.1
done
port=$(sed -n 's|.*server: https://127.0.0.1:\([0-9]*\).*|\1|p' "$data/kubeconfig" | head -1)
forward "$port"
SKIFF_CGROUP_PARENT=$CGROUP nsenter --net="/run/netns/$NS" target/release/skiff agent \
    --server "https://$HOST_IP:$port" --token "$(cat "$data/lib/server/token")" \
    --data-dir "$AGENT_DIR" --node-name skiff-b --node-ip "$NODE_IP" \
    --private-registry "$AGENT_DIR/registries.yaml" --pod-logs-dir "$AGENT_DIR/pod-logs" \
    >"$OUT/agent-b.log" 2>&1 &
agent=$!
# Routes once the agent's node has its podCIDR: to it from the host; from the namespace to
# the other nodes' pods and to the API server's advertised address (the kubernetes Service).
kubectl=$(command -v kubectl || echo /opt/skiff-test/bin/kubectl)
k() { KUBECONFIG=$data/kubeconfig "$kubectl" "$@"; }
for _ in $(seq 300); do
    cidr=$(k get node skiff-b -o jsonpath='{.spec.podCIDR}' 2>/dev/null) && [ -n "$cidr" ] && break
    sleep 0.1
done
if [ -n "${cidr:-}" ]; then
    ip route replace "$cidr" via "$NODE_IP"
    for other in $(k get nodes -o jsonpath='{range .items[?(@.metadata.name!="skiff-b")]}{.spec.podCIDR} {end}'); do
        ip netns exec "$NS" ip route replace "$other" via "$HOST_IP"
    done
    api=$(k get endpoints kubernetes -o jsonpath='{.subsets[0].addresses[0].ip}')
    case "$api" in 127.*|"") ;; *) ip netns exec "$NS" ip route replace "$api/32" via "$HOST_IP" ;; esac
else
    echo "node skiff-b got no podCIDR: no routes to its pods" >&2
fi
wait "$run"
