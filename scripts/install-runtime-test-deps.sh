#!/usr/bin/env bash
# Installs what the runtime tests (tests/runtime_images.rs, tests/common/registry.rs) need,
# from Debian's archive: a local OCI registry, skopeo/umoci to push and convert images,
# a static busybox to build test images from, and htpasswd for the basic-auth registry.
# Idempotent: does nothing when every tool is already present.
set -euo pipefail

need=()
for pkg in docker-registry skopeo umoci busybox-static apache2-utils; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-runtime-test-deps: need root to install ${need[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The package may start a system registry on :5000; the tests start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
    systemctl stop docker-registry || true
fi
