#!/usr/bin/env bash
# Builds the static release binary target/x86_64-unknown-linux-musl/release/skiff (what the
# Dockerfile packages) and proves it is static and runs. Adds the musl target and musl-tools
# itself when missing, so it also works outside scripts/test.sh.
#
# SKIFF_STATIC_PROFILE picks another cargo profile (default: release). scripts/test.sh uses
# `static-check`: the same code and link, without the whole-program optimisation that takes
# the release profile 25-40 minutes on 2 cores (what is checked here, the static musl link and
# the binary starting, does not depend on it).
set -euo pipefail

TARGET=x86_64-unknown-linux-musl
cd "$(dirname "$0")/.."

log() { printf '[build-static] %s\n' "$*" >&2; }
die() { printf '[build-static] error: %s\n' "$*" >&2; exit 1; }

if command -v rustup >/dev/null; then
    targets="$(rustup target list --installed)"
    if [[ $'\n'"$targets"$'\n' != *$'\n'"$TARGET"$'\n'* ]]; then
        log "adding Rust target $TARGET"
        rustup target add "$TARGET" >/dev/null || die "rustup target add $TARGET failed"
    fi
fi
if ! command -v musl-gcc >/dev/null; then
    # ring compiles C and assembly for the target; the musl wrapper makes that link statically.
    [ "$(id -u)" -eq 0 ] || die "musl-gcc missing; install musl-tools (as root: apt-get install musl-tools)"
    log "installing musl-tools"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends musl-tools >/dev/null \
        || die "apt-get install musl-tools failed"
fi

export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-musl-gcc}"
# A plain static executable, not static-pie: a PIE carries a relocation table (.rela.dyn,
# ~0.9 MB of the ~25 MB binary) for the loader to apply at start. Go binaries such as k3s
# and the Kubernetes components ship the same way; heap, stacks and mappings are still
# randomised. Set here, not in .cargo/config.toml: with --target the flag reaches only the
# binary's own code, while a native build on a musl host would also hand it to proc-macros.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="${CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS:--C relocation-model=static}"
profile="${SKIFF_STATIC_PROFILE:-release}"
cargo build --profile "$profile" --target "$TARGET" --bin skiff

bin="${CARGO_TARGET_DIR:-target}/$TARGET/$profile/skiff"
[ -x "$bin" ] || die "$bin was not produced"

desc="$(file -b "$bin")"
case "$desc" in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) die "$bin is not statically linked: $desc" ;;
esac
# ldd prints "not a dynamic executable" (exit 1) or "statically linked" for static binaries.
ldd_out="$(ldd "$bin" 2>&1 || true)"
case "$ldd_out" in
    *"not a dynamic executable"* | *"statically linked"*) ;;
    *) die "ldd finds dynamic dependencies in $bin: $ldd_out" ;;
esac

version="$("$bin" --version)" || die "$bin --version failed"
[ -n "$version" ] || die "$bin --version printed nothing"
size_mb="$(awk -v b="$(stat -c %s "$bin")" 'BEGIN { printf "%.1f", b / 1048576 }')"
log "ok: $bin is static (${size_mb} MiB): $version"
