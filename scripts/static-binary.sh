#!/usr/bin/env bash
# A static tcr-adapter binary: one file that runs on any x86-64 Linux with no shared libraries.
#   scripts/static-binary.sh          # build target/static/tcr-adapter (stripped) + check it
#   STATIC_BUILD_ONLY=1 scripts/static-binary.sh   # build and the ldd/file checks only
#
# How: glibc's static libraries (`-C target-feature=+crt-static` on x86_64-unknown-linux-gnu; the
# musl target's standard library cannot be installed here) and Debian's static OpenSSL
# (OPENSSL_STATIC=1 links libssl.a/libcrypto.a from libssl-dev). No Cargo feature, no vendored
# OpenSSL: the default build is untouched, and the static one links the same Debian-maintained
# OpenSSL 3.0 that the image and the dynamic build use (security updates come with apt).
# `--target` is given explicitly so that RUSTFLAGS reach only the target, not build scripts or
# proc macros (which must stay dynamic to be loaded by cargo/rustc).
#
# The check: `ldd` says "not a dynamic executable", `file` says "statically linked"; then the
# binary alone (+ nothing else) in an image made `FROM scratch` (buildah) serves the embedded
# emulator over TLS (self-signed mode: the static OpenSSL on both sides of the hop) and a skopeo
# push from the host into a new namespace, pulled back with the same digest. Last, names: a static
# glibc cannot load NSS modules, so only its built-in /etc/hosts and DNS lookups are there; both
# are checked (DNS with dnsmasq on 127.0.0.77, loopback only).
set -euo pipefail
# The whole script is one function, read in full before it runs: editing this file while it runs
# cannot change what the running copy does.
main() {
cd "$(dirname "$0")/.."
ROOT="$PWD"
TARGET=x86_64-unknown-linux-gnu
BIN="$ROOT/target/$TARGET/release/tcr-adapter"
say() { echo "== static-binary: $*"; }
die() { echo "static-binary: FAILED: $*" >&2; exit 1; }

for p in libssl-dev pkg-config file skopeo buildah podman runc; do
  if ! dpkg -s "$p" >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "package $p is missing (install it as root)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p"
  fi
done
[ -f /usr/lib/x86_64-linux-gnu/libssl.a ] && [ -f /usr/lib/x86_64-linux-gnu/libcrypto.a ] \
  || die "Debian's static OpenSSL (libssl.a, libcrypto.a from libssl-dev) is missing"

say "cargo build --release --locked --target $TARGET (+crt-static, OPENSSL_STATIC=1)"
B0=$(date +%s)
# glibc warns at link time that dlopen/getaddrinfo/getpwnam "require at runtime the shared libraries
# from the glibc version used for linking": that is the NSS limit tested below.
mkdir -p target
build_rc=0
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" OPENSSL_STATIC=1 \
  cargo build --release --locked --target "$TARGET" --bin tcr-adapter > target/static-build.log 2>&1 || build_rc=$?
grep -vE 'statically linked applications requires at runtime|^\s*$' target/static-build.log || true
[ "$build_rc" = 0 ] || die "the static build failed (log: target/static-build.log)"
[ -x "$BIN" ] || die "no binary at $BIN"
BUILD_SECS=$(( $(date +%s) - B0 ))
ldd_out=$(ldd "$BIN" 2>&1 || true)
echo "$ldd_out" | grep -qE 'not a dynamic executable|statically linked' || die "ldd: $ldd_out"
file_out=$(file -b "$BIN")
echo "$file_out" | grep -qE 'statically linked|static-pie linked' || die "file: $file_out"
SIZE=$(stat -c %s "$BIN")
# The file to ship: stripped (the release profile keeps line tables for backtraces: debug = 1).
SHIP="$ROOT/target/static/tcr-adapter"
mkdir -p "$(dirname "$SHIP")"; strip -o "$SHIP" "$BIN"; SIZE_STRIPPED=$(stat -c %s "$SHIP")
say "built in ${BUILD_SECS} s: $(( SIZE / 1048576 )) MiB ($(( SIZE_STRIPPED / 1048576 )) MiB stripped); ldd: $(echo "$ldd_out" | head -n1 | xargs); file: $(echo "$file_out" | grep -oE "static(-pie| ally)? ?linked|statically linked")"
"$SHIP" --version >/dev/null || die "the static binary does not run"
say "ship: $SHIP ($(( SIZE_STRIPPED / 1048576 )) MiB, stripped; unstripped with line tables: $BIN)"
[ "${STATIC_BUILD_ONLY:-0}" = 1 ] && exit 0

# ---------------------------------------------------------------- from an otherwise empty image
[ "$(id -u)" = 0 ] || die "the image check needs root (rootful buildah/podman)"
CACHE_DIR="${CONTAINER_CHECK_CACHE:-/var/cache/tcr-adapter-ci}"
# shellcheck source=scripts/lib/podman.sh
source "$ROOT/scripts/lib/podman.sh"
IMAGE=localhost/tcr-adapter-static:ci
WORK=$(mktemp -d)
CTRS=()
cleanup() {
  local rc=$? c
  for c in "${CTRS[@]}"; do podman rm -f -t 2 "$c" >/dev/null 2>&1 || true; done
  if [ -n "${DNSMASQ_PID:-}" ]; then kill "$DNSMASQ_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ctr=$(buildah from scratch)
buildah copy -q "$ctr" "$SHIP" /tcr-adapter >/dev/null
buildah config --entrypoint '["/tcr-adapter"]' --cmd serve --user 10001:10001 --workingdir /data "$ctr"
buildah commit --rm -q "$ctr" "$IMAGE" >/dev/null
say "image $IMAGE: FROM scratch + the binary only ($(( $(podman image inspect --format '{{.Size}}' "$IMAGE") / 1048576 )) MiB)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P_ADP=$(free_port); P_REG=$(free_port); P_API=$(free_port)
mkdir -p "$WORK/data"; chown 10001:10001 "$WORK/data"
# Host network, loopback addresses only: the adapter + the embedded emulator in TLS mode.
c=$("${PODMAN[@]}" run -d "${ULIMITS[@]}" --network host -v "$WORK/data:/data" \
  -e TCR_ADAPTER__SERVER__LISTEN=127.0.0.1:$P_ADP \
  -e TCR_ADAPTER__EMULATOR__REGISTRY_LISTEN=127.0.0.1:$P_REG \
  -e TCR_ADAPTER__EMULATOR__API_LISTEN=127.0.0.1:$P_API \
  -e TCR_ADAPTER__EMULATOR__DATA_DIR=/data/emulator \
  -e TCR_ADAPTER__EMULATOR__TLS__MODE=self-signed \
  "$IMAGE" serve)
CTRS+=("$c")
for i in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$P_ADP/readyz" >/dev/null 2>&1 && break
  [ "$(podman inspect --format '{{.State.Running}}' "$c")" = true ] || break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$P_ADP/readyz" >/dev/null 2>&1 \
  || { podman logs "$c" >&2; die "the static binary in a scratch image did not become ready"; }
grep -q 'https://' <(podman logs "$c" 2>&1) || die "the embedded emulator did not start in TLS mode"

set -a; . "$ROOT/demo.env"; set +a
NS="static$(date +%s)"
DEST="docker://127.0.0.1:$P_ADP/$NS/hello:1"
skopeo copy -q --dest-tls-verify=false --dest-creds "$DEMO_SECRET_ID:$DEMO_SECRET_KEY" \
  --digestfile "$WORK/pushed" "oci:$WORK/data/emulator/demo-image:hello" "$DEST" \
  || { podman logs --tail 30 "$c" >&2; die "skopeo push into a new namespace through the static binary failed"; }
skopeo copy -q --src-tls-verify=false --src-creds "$DEMO_SECRET_ID:$DEMO_SECRET_KEY" "$DEST" "dir:$WORK/pulled" \
  || die "skopeo pull through the static binary failed"
pulled="sha256:$(sha256sum "$WORK/pulled/manifest.json" | awk '{print $1}')"
[ "$(cat "$WORK/pushed")" = "$pulled" ] || die "digests differ: pushed $(cat "$WORK/pushed"), pulled $pulled"
say "scratch image: TLS to the emulator, push into new namespace $NS and pull back OK ($pulled)"

# SIGTERM: exit 0.
podman stop -t 10 "$c" >/dev/null
[ "$(podman inspect --format '{{.State.ExitCode}}' "$c")" = 0 ] || die "the static binary did not exit 0 on SIGTERM"

# The static glibc limit: names. A second adapter whose upstream is named (localhost, in the
# container's /etc/hosts) instead of numeric; `check` says whether it reaches it.
c2=$("${PODMAN[@]}" run -d "${ULIMITS[@]}" --network host -v "$WORK/data:/data" \
  -e TCR_ADAPTER__EMULATOR__REGISTRY_LISTEN=127.0.0.1:$P_REG \
  -e TCR_ADAPTER__EMULATOR__API_LISTEN=127.0.0.1:$P_API \
  -e TCR_ADAPTER__EMULATOR__DATA_DIR=/data/emulator "$IMAGE" emulator)
CTRS+=("$c2")
for i in $(seq 1 50); do curl -fsS "http://127.0.0.1:$P_API/metrics" >/dev/null 2>&1 && break; sleep 0.2; done
check_with() { # upstream host [podman args] -> check's exit status, output in $WORK/check-$1.txt
  local host="$1"; shift
  "${PODMAN[@]}" run --rm "${ULIMITS[@]}" --network host "$@" \
    -e "TCR_ADAPTER__TCR__REGISTRY_URL=http://$host:$P_REG" -e "TCR_ADAPTER__TCR__API_ENDPOINT=http://$host:$P_API" \
    -e TCR_ADAPTER__TCR__REGISTRY_ID=tcr-emulator -e TCR_ADAPTER__TCR__REGION=ap-guangzhou \
    -e "TCR_ADAPTER__TCR__SECRET_ID=$DEMO_SECRET_ID" -e "TCR_ADAPTER__TCR__SECRET_KEY=$DEMO_SECRET_KEY" \
    "$IMAGE" check > "$WORK/check-$host.txt" 2>&1
}
if check_with 127.0.0.1; then say "'check' against a numeric upstream: passes"
else cat "$WORK/check-127.0.0.1.txt" >&2; die "'check' from the scratch image fails against a numeric upstream"; fi
# What a static glibc can and cannot do with names: glibc's NSS modules cannot be loaded by a
# static binary, but glibc (>= 2.34) has `files` (/etc/hosts) and `dns` (/etc/resolv.conf) built in.
# Checked: `check` against an upstream named in /etc/hosts (localhost) and against one resolved by a
# DNS server (dnsmasq on 127.0.0.77, loopback only, named in the container's resolv.conf).
command -v dnsmasq >/dev/null 2>&1 || {
  apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dnsmasq-base; }
command -v dnsmasq >/dev/null 2>&1 || die "dnsmasq is missing"
dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces --listen-address=127.0.0.77 \
  --port=53 --address=/tcr-emulator.test/127.0.0.1 --pid-file="$WORK/dnsmasq.pid" 2> "$WORK/dnsmasq.log" &
DNSMASQ_PID=$!
echo 'nameserver 127.0.0.77' > "$WORK/resolv.conf"
sleep 0.5
kill -0 "$DNSMASQ_PID" 2>/dev/null || { cat "$WORK/dnsmasq.log" >&2; die "dnsmasq did not start on 127.0.0.77:53"; }
if check_with localhost; then say "'check' against an upstream named in /etc/hosts (localhost): passes"
else cat "$WORK/check-localhost.txt" >&2; die "the static binary cannot resolve localhost from /etc/hosts"; fi
if check_with tcr-emulator.test -v "$WORK/resolv.conf:/etc/resolv.conf:ro"; then
  say "'check' against an upstream resolved by DNS (tcr-emulator.test): passes"
else cat "$WORK/check-tcr-emulator.test.txt" >&2; die "the static binary cannot resolve a name through DNS"; fi
say "names: /etc/hosts and DNS work; NSS modules from /etc/nsswitch.conf (mdns, ldap, sss, resolve) cannot be loaded by a static binary"
say "OK"
}
main "$@"
