# Sourced by scripts/container-check.sh and scripts/static-binary.sh (needs CACHE_DIR): podman as
# this host allows it. Writes $CACHE_DIR/containers.conf — runc (crun refuses this host's cgroup
# layout) and ulimits the sandbox allows (podman's defaults exceed them) — and sets
# CONTAINERS_CONF, PODMAN and ULIMITS.
mkdir -p "$CACHE_DIR"
export CONTAINERS_CONF="$CACHE_DIR/containers.conf"
cat > "$CONTAINERS_CONF" <<'EOF'
# Written by scripts/lib/podman.sh: runc (crun refuses this host's cgroup layout) and ulimits
# the sandbox allows (podman's defaults exceed them).
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
EOF
PODMAN=(podman --runtime runc)
ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
