#!/usr/bin/env bash
# The container image and the compose stack, built and run for real (no Docker engine needed):
#   scripts/container-check.sh
#
#  1. installs what it needs (buildah, podman, runc, debootstrap, the CNI dnsname plugin, skopeo;
#     podman-compose from PyPI) and fails loudly when any piece is missing;
#  2. makes local stand-ins for the Dockerfile's two public base images once (they cannot be pulled
#     here) and tags them `debian:bookworm-slim` and `rust:1-bookworm` in local storage:
#     a `debootstrap --variant=minbase bookworm` root, and the same plus gcc and this host's Rust
#     toolchain; both are kept in local storage and the debootstrap root under $CACHE_DIR;
#  3. builds the real `Dockerfile` (buildah, chroot isolation) as tcr-adapter:0.1.0, the image name
#     docker-compose.yml and the Helm chart use;
#  4. checks the image: user 10001, `tcr-adapter --version`, its size;
#  5. starts the real `docker-compose.yml` with podman-compose on free loopback ports, waits for both
#     health checks itself (podman here never runs them: no systemd timers, and podman-compose
#     ignores `condition: service_healthy` with podman < 4.6), runs `tcr-adapter check` inside the
#     adapter container, pushes an image with skopeo from the host through the adapter container
#     into a new namespace, pulls it back and compares digests, stops the emulator with SIGTERM
#     (it must exit 0 within the stop timeout), and always takes the stack down (trap).
#
# Podman on this kind of host: the `runc` runtime (crun refuses the cgroup v1 layout) and explicit
# ulimits (the defaults exceed what the sandbox allows). Both are set in a containers.conf of our
# own, named by CONTAINERS_CONF for podman, podman-compose and buildah alike: nothing in /etc is
# changed. Needs root (apt-get, rootful podman).
#
# Environment: CONTAINER_CHECK_CACHE (default /var/cache/tcr-adapter-ci), KEEP_STACK=1 leaves the
# compose stack running for a look (take it down with the command printed at the end),
# CONTAINER_CHECK_REUSE_IMAGE=1 skips the build when tcr-adapter:0.1.0 exists (for iterating on
# this script only; the test command never sets it).
set -euo pipefail
# The whole script is one function, read in full before it runs: editing this file while it runs
# cannot change what the running copy does.
main() {
cd "$(dirname "$0")/.."
ROOT="$PWD"

CACHE_DIR="${CONTAINER_CHECK_CACHE:-/var/cache/tcr-adapter-ci}"
IMAGE="localhost/tcr-adapter:0.1.0"       # = docker-compose.yml `image:` = Helm image.repository:tag
SLIM="docker.io/library/debian:bookworm-slim"
RUST="docker.io/library/rust:1-bookworm"
PROJECT="tcr-adapter-ci"
UID_EXPECTED=10001
T0=$(date +%s)

say() { echo "== container-check: $*"; }
die() { echo "container-check: FAILED: $*" >&2; exit 1; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if [ -n "$SUDO" ]; then die "needs root (apt-get, debootstrap, rootful podman/buildah): run it as root"; fi

# ---------------------------------------------------------------- 1. tools
APT_PACKAGES=(buildah podman runc conmon debootstrap containernetworking-plugins
  golang-github-containernetworking-plugin-dnsname skopeo iptables curl file)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
PYTHON="${PYTHON:-python3}"
if ! command -v podman-compose >/dev/null 2>&1; then
  say "installing podman-compose (PyPI)"
  "$PYTHON" -m pip install -q --disable-pip-version-check podman-compose
  hash -r
fi
for cmd in buildah podman runc conmon debootstrap skopeo curl file podman-compose rustc cargo; do
  command -v "$cmd" >/dev/null 2>&1 || die "command $cmd is missing"
done
for plugin in bridge portmap firewall tuning host-local dnsname; do
  [ -x "/usr/lib/cni/$plugin" ] || die "CNI plugin /usr/lib/cni/$plugin is missing (containers would not resolve each other's names)"
done

# shellcheck source=scripts/lib/podman.sh
source "$ROOT/scripts/lib/podman.sh"
# podman logs "unable to get systemd connection to add healthchecks" for every container of an
# image with a HEALTHCHECK (no systemd here): known, harmless, filtered out.
prun() { "${PODMAN[@]}" run "$@" 2> >(grep -v 'unable to get systemd connection' >&2); }

# ---------------------------------------------------------------- 2. base image stand-ins
# The Debian mirror apt on this host uses (deb822 or one-line sources). No host is named here:
# a machine without a Debian source configured for apt cannot build the stand-ins, and says so.
MIRROR="$(grep -hsoE '^URIs:[[:space:]]*\S+' /etc/apt/sources.list.d/*.sources 2>/dev/null \
  | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)"
if [ -z "$MIRROR" ]; then
  MIRROR="$(grep -hsE '^deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)"
fi
[ -n "$MIRROR" ] || die "no Debian mirror in this host's apt sources (/etc/apt/sources.list{,.d/}): configure apt first"

# Host's apt sources for the images (bookworm + updates + security, as the real images have).
write_sources() { # $1 = root
  local root="$1"
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    rm -f "$root/etc/apt/sources.list"
    cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/debian.sources"
  else
    echo "deb $MIRROR bookworm main" > "$root/etc/apt/sources.list"
  fi
}

make_slim() {
  local rootfs="$CACHE_DIR/bookworm-minbase"
  if [ ! -x "$rootfs/bin/sh" ]; then
    say "debootstrap --variant=minbase bookworm from $MIRROR (once, kept in $rootfs)"
    rm -rf "$rootfs.tmp"
    debootstrap --variant=minbase bookworm "$rootfs.tmp" "$MIRROR" > "$CACHE_DIR/debootstrap.log" 2>&1 \
      || { tail -n 30 "$CACHE_DIR/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE_DIR/debootstrap.log)"; }
    mv "$rootfs.tmp" "$rootfs"
  fi
  say "committing the stand-in for $SLIM"
  local ctr mnt
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  cp -a "$rootfs/." "$mnt/"
  write_sources "$mnt"
  # What the real slim image does: no docs, man pages or locales from later installs either.
  mkdir -p "$mnt/etc/dpkg/dpkg.cfg.d"
  cat > "$mnt/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  echo 'APT::Install-Recommends "false";' > "$mnt/etc/apt/apt.conf.d/docker-no-recommends"
  find "$mnt/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  rm -rf "$mnt/usr/share/man/"* "$mnt/usr/share/info/"* "$mnt/usr/share/locale/"* \
    "$mnt/var/cache/apt/"*.bin "$mnt/var/cache/apt/archives/"*.deb "$mnt/var/lib/apt/lists/"* \
    "$mnt/var/log/"*.log "$mnt/var/log/apt/"* "$mnt/debootstrap"
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd bash --label "org.opencontainers.image.description=local stand-in for $SLIM (debootstrap minbase)" "$ctr"
  buildah commit --rm -q "$ctr" "$SLIM" >/dev/null
}

make_rust() {
  local sysroot toolchain ctr mnt
  sysroot="$(rustc --print sysroot)"
  toolchain="$(basename "$sysroot")"
  say "committing the stand-in for $RUST (debian stand-in + gcc + this host's toolchain $toolchain)"
  ctr=$(buildah from --pull=never "$SLIM")
  mnt=$(buildah mount "$ctr")
  # cargo verifies the registry's TLS against the image's CA bundle: trust what this host trusts
  # (a host whose outbound TLS passes through extra CAs has them in /usr/local/share/ca-certificates).
  mkdir -p "$mnt/usr/local/share/ca-certificates"
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$mnt/usr/local/share/ca-certificates/"
  fi
  # The toolchain where the official image keeps it (RUSTUP_HOME, CARGO_HOME), docs left out.
  mkdir -p "$mnt/usr/local/rustup/toolchains/$toolchain" "$mnt/usr/local/cargo/bin"
  tar -C "$sysroot" --exclude=./share/doc -cf - . | tar -C "$mnt/usr/local/rustup/toolchains/$toolchain" -xf -
  if command -v rustup >/dev/null 2>&1; then
    cp -L "$(command -v rustup)" "$mnt/usr/local/cargo/bin/rustup"
    printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$toolchain" \
      > "$mnt/usr/local/rustup/settings.toml"
    for b in "$sysroot"/bin/*; do ln -sf rustup "$mnt/usr/local/cargo/bin/$(basename "$b")"; done
  else
    for b in "$sysroot"/bin/*; do
      ln -sf "/usr/local/rustup/toolchains/$toolchain/bin/$(basename "$b")" "$mnt/usr/local/cargo/bin/"
    done
  fi
  buildah umount "$ctr" >/dev/null
  buildah run --isolation chroot "$ctr" -- sh -c '
    set -e
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      ca-certificates gcc libc6-dev make git curl >/dev/null
    update-ca-certificates >/dev/null
    rm -rf /var/lib/apt/lists/*'
  buildah config --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env RUSTUP_AUTO_INSTALL=0 --env "RUST_VERSION=$(rustc --version | awk '{print $2}')" \
    --label "org.opencontainers.image.description=local stand-in for $RUST" "$ctr"
  buildah commit --rm -q "$ctr" "$RUST" >/dev/null
  buildah run --isolation chroot "$(buildah from --pull=never "$RUST")" -- cargo --version \
    || die "the $RUST stand-in has no working cargo"
  buildah rm --all >/dev/null 2>&1 || true
}

S0=$(date +%s)
podman image exists "$SLIM" || make_slim
podman image exists "$SLIM" || die "no $SLIM image"
podman image exists "$RUST" || make_rust
podman image exists "$RUST" || die "no $RUST image"
[ "$(( $(date +%s) - S0 ))" -lt 2 ] || say "base image stand-ins made in $(( $(date +%s) - S0 )) s"
say "base images: $SLIM, $RUST (local stand-ins; remove them with 'podman rmi' to remake)"

# ---------------------------------------------------------------- 3. build the real Dockerfile
B0=$(date +%s)
if [ "${CONTAINER_CHECK_REUSE_IMAGE:-0}" = 1 ] && podman image exists "$IMAGE"; then
  say "CONTAINER_CHECK_REUSE_IMAGE=1: using the existing $IMAGE, NOT rebuilt"
else
  say "building the real Dockerfile as $IMAGE (buildah bud --isolation chroot --layers --format docker)"
  # --layers: a later run on this machine reuses the build stage when Cargo.*/src are unchanged.
  # --format docker: an OCI image config has no HEALTHCHECK (buildah drops it with a warning);
  # Docker's format keeps it, as `docker build` does.
  buildah bud --isolation chroot --layers --format docker --pull=never "${ULIMITS[@]}" -f Dockerfile -t "$IMAGE" . \
    > "$CACHE_DIR/build.log" 2>&1 || { tail -n 40 "$CACHE_DIR/build.log" >&2; die "the Dockerfile did not build (log: $CACHE_DIR/build.log)"; }
fi
BUILD_SECS=$(( $(date +%s) - B0 ))
SIZE_BYTES=$(podman image inspect --format '{{.Size}}' "$IMAGE")
SIZE_MIB=$(( SIZE_BYTES / 1048576 ))
say "built in ${BUILD_SECS} s; image size ${SIZE_MIB} MiB (${SIZE_BYTES} bytes)"

# ---------------------------------------------------------------- 4. the image itself
WORK_EARLY=$(mktemp -d)
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
[ "${user%%:*}" = "$UID_EXPECTED" ] || die "image USER is '$user', expected $UID_EXPECTED"
run_uid=$(prun --rm "${ULIMITS[@]}" --entrypoint id "$IMAGE" -u)
[ "$run_uid" = "$UID_EXPECTED" ] || die "a container of the image runs as uid $run_uid, expected $UID_EXPECTED"
version=$(prun --rm "${ULIMITS[@]}" "$IMAGE" --version)
[ "$version" = "tcr-adapter $(awk -F'"' '/^version/ {print $2; exit}' Cargo.toml)" ] \
  || die "'tcr-adapter --version' in the image printed '$version'"
say "image: user $user, runs as uid $run_uid, '$version'"

# ---------------------------------------------------------------- 4b. Dockerfile = compose = Helm
# One image, port, user and health checks in the three: the Helm chart rendered by the real Helm
# library (tests/python/render_chart.py, helm-python-sdk), the compose file, the Dockerfile and the
# built image's own configuration.
"$PYTHON" -c 'import helm_python' 2>/dev/null \
  || "$PYTHON" -m pip install -q --disable-pip-version-check helm-python-sdk pyyaml
podman image inspect "$IMAGE" > "$WORK_EARLY/image.json"
"$PYTHON" - "$ROOT" "$WORK_EARLY/image.json" <<'PY' || die "Dockerfile, docker-compose.yml and the Helm chart disagree (see above)"
import json, re, subprocess, sys, yaml
root, image_json = sys.argv[1], sys.argv[2]
inspect = json.load(open(image_json))[0]
img = inspect["Config"]
health = inspect.get("Healthcheck") or inspect.get("HealthCheck") or img.get("Healthcheck") or {}
if not health.get("Test"):
    print("MISMATCH: the built image has no HEALTHCHECK (built in OCI format?)", file=sys.stderr)
    sys.exit(1)
values = {"publicUrl": "https://x.example.com", "tcr": {"registryUrl": "https://r.example.com"},
          "secret": {"values": {"signingKey": "a2V5", "sealingKey": "a2V5"}}}
out = json.loads(subprocess.run([sys.executable, f"{root}/tests/python/render_chart.py",
                                 f"{root}/deploy/helm/tcr-adapter", json.dumps(values)],
                                check=True, capture_output=True, text=True).stdout)
dep = next(d for d in out["docs"] if d["kind"] == "Deployment")["spec"]["template"]["spec"]
ctr = dep["containers"][0]
env = {e["name"]: e.get("value") for e in ctr["env"]}
compose = yaml.safe_load(open(f"{root}/docker-compose.yml"))["services"]
dockerfile = open(f"{root}/Dockerfile").read()
chart = yaml.safe_load(open(f"{root}/deploy/helm/tcr-adapter/Chart.yaml"))
cargo_version = re.search(r'^version = "([^"]+)"', open(f"{root}/Cargo.toml").read(), re.M).group(1)
bad = []
def same(what, *vals):
    if len(set(map(str, vals))) != 1:
        bad.append(f"{what}: {vals}")
# image name and version
same("image (Helm repository:tag, compose emulator, compose adapter)",
     f'{ctr["image"]}', compose["emulator"]["image"], compose["adapter"]["image"])
same("version (Cargo.toml, Chart appVersion, image tag)", cargo_version, chart["appVersion"],
     ctr["image"].rsplit(":", 1)[1])
# port
port = ctr["ports"][0]["containerPort"]
same("adapter port (Helm containerPort, Helm listen, Dockerfile EXPOSE, Dockerfile listen, image, compose listen, compose port)",
     port, env["TCR_ADAPTER__SERVER__LISTEN"].rsplit(":", 1)[1],
     re.search(r"^EXPOSE (\d+)", dockerfile, re.M).group(1),
     re.search(r"TCR_ADAPTER__SERVER__LISTEN=[^:]+:(\d+)", dockerfile).group(1),
     list(img.get("ExposedPorts", {}))[0].split("/")[0],
     compose["adapter"]["environment"]["TCR_ADAPTER__SERVER__LISTEN"].rsplit(":", 1)[1],
     compose["adapter"]["ports"][0].rsplit(":", 1)[1])
# user
sc = dep["securityContext"]
same("uid:gid (Helm podSecurityContext, Dockerfile USER, image)",
     f'{sc["runAsUser"]}:{sc["runAsGroup"]}', re.search(r"^USER (\S+)", dockerfile, re.M).group(1), img["User"])
if not sc.get("runAsNonRoot"):
    bad.append("Helm: runAsNonRoot is not set")
# health checks: liveness /healthz on the adapter port everywhere
same("liveness path (Helm livenessProbe, Dockerfile HEALTHCHECK, image, compose adapter)",
     ctr["livenessProbe"]["httpGet"]["path"],
     re.search(r"HEALTHCHECK.*?http://127\.0\.0\.1:\d+(/\S+)", dockerfile, re.S).group(1),
     re.search(r"http://127\.0\.0\.1:\d+(/\S+)", " ".join(health["Test"])).group(1),
     re.search(r"http://127\.0\.0\.1:\d+(/\S+)", " ".join(compose["adapter"]["healthcheck"]["test"])).group(1))
same("health port (Helm probe port, Dockerfile HEALTHCHECK, compose adapter)",
     port if ctr["livenessProbe"]["httpGet"]["port"] == "http" else ctr["livenessProbe"]["httpGet"]["port"],
     re.search(r"HEALTHCHECK.*?http://127\.0\.0\.1:(\d+)", dockerfile, re.S).group(1),
     re.search(r"http://127\.0\.0\.1:(\d+)", " ".join(compose["adapter"]["healthcheck"]["test"])).group(1))
if ctr["readinessProbe"]["httpGet"]["path"] != "/readyz":
    bad.append(f'Helm readiness probe is {ctr["readinessProbe"]["httpGet"]["path"]}, not /readyz')
# read-only root file system
same("read-only root (Helm readOnlyRootFilesystem, compose adapter read_only)",
     bool(ctr["securityContext"].get("readOnlyRootFilesystem")), bool(compose["adapter"].get("read_only")))
if bad:
    print("\n".join("MISMATCH: " + b for b in bad), file=sys.stderr)
    sys.exit(1)
print(f"== container-check: Dockerfile, docker-compose.yml and the Helm chart agree: image {ctr['image']}, "
      f"port {port}, user {img['User']}, liveness /healthz, readiness /readyz, read-only root")
PY
rm -rf "$WORK_EARLY"

# ---------------------------------------------------------------- 5. the compose stack
free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export TCR_ADAPTER_PORT TCR_EMULATOR_REGISTRY_PORT TCR_EMULATOR_API_PORT
TCR_ADAPTER_PORT=$(free_port); TCR_EMULATOR_REGISTRY_PORT=$(free_port); TCR_EMULATOR_API_PORT=$(free_port)
COMPOSE=(podman-compose -p "$PROJECT" -f "$ROOT/docker-compose.yml")
WORK=$(mktemp -d)
cleanup() {
  local rc=$?
  if [ "${KEEP_STACK:-0}" = 1 ]; then
    echo "stack left running: cd $ROOT && CONTAINERS_CONF=$CONTAINERS_CONF ${COMPOSE[*]} down -v"
  else
    "${COMPOSE[@]}" down -v -t 5 > "$CACHE_DIR/compose-down.log" 2>&1 \
      || echo "container-check: warning: compose down failed (log: $CACHE_DIR/compose-down.log)" >&2
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A stack left over from an interrupted run.
"${COMPOSE[@]}" down -v -t 1 > /dev/null 2>&1 || true
say "podman-compose up (adapter on 127.0.0.1:$TCR_ADAPTER_PORT, emulator on :$TCR_EMULATOR_REGISTRY_PORT/:$TCR_EMULATOR_API_PORT)"
"${COMPOSE[@]}" up -d --no-build > "$CACHE_DIR/compose-up.log" 2>&1 \
  || { tail -n 40 "$CACHE_DIR/compose-up.log" >&2; die "podman-compose up failed (log: $CACHE_DIR/compose-up.log)"; }

container_of() { # service name -> container name
  podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n1
}
EMU=$(container_of emulator); ADP=$(container_of adapter)
[ -n "$EMU" ] && [ -n "$ADP" ] || die "podman-compose did not create both containers (emulator='$EMU' adapter='$ADP')"

# Health: run each container's own health check (the compose file's) until it passes.
wait_healthy() { # container
  local c="$1" i
  for i in $(seq 1 60); do
    if podman healthcheck run "$c" >/dev/null 2>&1; then return 0; fi
    [ "$(podman inspect --format '{{.State.Running}}' "$c")" = true ] || break
    sleep 1
  done
  podman logs --tail 30 "$c" >&2 || true
  die "container $c did not become healthy"
}
wait_healthy "$EMU"; wait_healthy "$ADP"
curl -fsS "http://127.0.0.1:$TCR_ADAPTER_PORT/healthz" >/dev/null || die "adapter /healthz not reachable from the host"
curl -fsS "http://127.0.0.1:$TCR_ADAPTER_PORT/readyz" >/dev/null || die "adapter /readyz fails: it cannot reach the emulator container"
say "both containers healthy (health checks run by this script: podman here runs none by itself)"

[ "$(podman exec "$ADP" id -u)" = "$UID_EXPECTED" ] || die "the adapter container does not run as uid $UID_EXPECTED"
# `tcr-adapter check` in a one-off container of the adapter service (compose's configuration and
# network; not `exec` into the running one, whose listener holds port 5000 that check tries to
# bind), with the demo keys as provisioner keys so that the cloud API is checked too.
set -a; . "$ROOT/demo.env"; set +a
"${COMPOSE[@]}" run --rm --no-deps -T -e "TCR_ADAPTER__TCR__SECRET_ID=$DEMO_SECRET_ID" \
  -e "TCR_ADAPTER__TCR__SECRET_KEY=$DEMO_SECRET_KEY" adapter check > "$WORK/check.txt" 2>&1 \
  || { cat "$WORK/check.txt" >&2; die "'tcr-adapter check' failed in a container of the adapter service"; }
say "'tcr-adapter check' in the adapter service: $(grep -E '^[0-9]+ ok' "$WORK/check.txt" | tail -n1)"

# A push through the adapter container into a new namespace, and back.
NS="ci$(date +%s)"
DEST="docker://127.0.0.1:$TCR_ADAPTER_PORT/$NS/bookworm-slim:1"
skopeo copy -q --dest-tls-verify=false --dest-creds "$DEMO_SECRET_ID:$DEMO_SECRET_KEY" \
  --digestfile "$WORK/pushed.digest" "containers-storage:$SLIM" "$DEST" \
  || die "skopeo push through the adapter container failed"
skopeo copy -q --src-tls-verify=false --src-creds "$DEMO_SECRET_ID:$DEMO_SECRET_KEY" \
  "$DEST" "dir:$WORK/pulled" || die "skopeo pull through the adapter container failed"
pushed=$(cat "$WORK/pushed.digest")
pulled="sha256:$(sha256sum "$WORK/pulled/manifest.json" | awk '{print $1}')"
remote=$(skopeo inspect --tls-verify=false --creds "$DEMO_SECRET_ID:$DEMO_SECRET_KEY" --format '{{.Digest}}' "$DEST")
[ "$pushed" = "$pulled" ] && [ "$pushed" = "$remote" ] \
  || die "digests differ: pushed $pushed, pulled $pulled, registry says $remote"
say "pushed and pulled $NS/bookworm-slim:1 through the adapter container: $pushed"

# SIGTERM: the adapter and the emulator exit 0 within their stop timeout (compose's
# stop_grace_period, 10 s when unset), i.e. without being killed. `podman-compose stop` sends
# SIGTERM and waits that long (it does not hand stop_grace_period to podman at create time).
grace_of() { # service -> seconds
  "$PYTHON" - "$ROOT/docker-compose.yml" "$1" <<'PY'
import re, sys, yaml
v = str(yaml.safe_load(open(sys.argv[1]))["services"][sys.argv[2]].get("stop_grace_period", "10s"))
units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
print(int(sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(ms|h|m|s)", v)) or float(v)))
PY
}
for svc in adapter emulator; do
  c=$(container_of "$svc"); timeout_s=$(grace_of "$svc")
  s0=$(date +%s%N)
  "${COMPOSE[@]}" stop "$svc" > "$CACHE_DIR/compose-stop.log" 2>&1 \
    || { cat "$CACHE_DIR/compose-stop.log" >&2; die "podman-compose stop $svc failed"; }
  ms=$(( ($(date +%s%N) - s0) / 1000000 ))
  code=$(podman inspect --format '{{.State.ExitCode}}' "$c")
  [ "$code" = 0 ] || die "$c exited $code on SIGTERM (expected 0)"
  [ "$ms" -lt $(( timeout_s * 1000 )) ] || die "$c took ${ms} ms to stop (stop_grace_period ${timeout_s} s: it was killed)"
  say "$svc: SIGTERM -> exit 0 in ${ms} ms (stop_grace_period ${timeout_s} s)"
done

say "OK in $(( $(date +%s) - T0 )) s: image $IMAGE ${SIZE_MIB} MiB, built in ${BUILD_SECS} s"
}
main "$@"
