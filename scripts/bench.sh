#!/usr/bin/env bash
# Benchmarks of tcr-adapter: the adapter against the direct path and against nginx, in one run.
#
#   scripts/bench.sh                 # full run: 1 GiB blobs, 3 runs of every figure (~15-20 min)
#   BENCH_QUICK=1 scripts/bench.sh   # quick run: 256 MiB blobs, 1 run
#
# Knobs: BENCH_RUNS (runs per figure), BENCH_BIG_MIB (size of the big blob), BENCH_WRK_SECS,
# BENCH_SYNC_IMAGES (images of the skopeo figures, default 50),
# BENCH_OUT (report file, default BENCHMARKS.md), BENCH_TMPDIR (where data dirs go, default /tmp),
# BENCH_SKIP_BUILD=1 (use the existing target/release/tcr-adapter), BENCH_TLS_ONLY=1 (only the TLS
# section 6, e.g. while working on it; the report then holds only its figures), BENCH_WAN=1 (also
# the WAN section 7, scripts/bench-wan.sh, with its BENCH_WAN_* knobs).
#
# Everything runs on 127.0.0.1 on free ports: the TCR emulator (`tcr-adapter emulator`), CNCF
# distribution 2.8 (token auth against the emulator's realm), two adapters (`tcr-adapter serve`,
# one per upstream) and one nginx (one server per upstream). Every process started here is
# stopped by PID on exit, and the temporary data directory is removed.
# Not part of CI: it is a measuring tool, see BENCHMARKS.md for the last results.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
QUICK=${BENCH_QUICK:-0}
if [[ $QUICK == 1 ]]; then
  RUNS=${BENCH_RUNS:-1}; BIG_MIB=${BENCH_BIG_MIB:-256}; WRK_SECS=${BENCH_WRK_SECS:-3}
else
  RUNS=${BENCH_RUNS:-3}; BIG_MIB=${BENCH_BIG_MIB:-1024}; WRK_SECS=${BENCH_WRK_SECS:-5}
fi
BIG=$((BIG_MIB << 20))
SMALL=$((1 << 20)); SMALL_COUNT=200
SYNC_IMAGES=${BENCH_SYNC_IMAGES:-50}
OUT=${BENCH_OUT:-$ROOT/BENCHMARKS.md}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/tcr-adapter
M="python3 $ROOT/bench/measure.py"
# shellcheck source=scripts/lib/bench.sh
source "$ROOT/scripts/lib/bench.sh"
T_START=$(date +%s)
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for tool in wrk nginx skopeo docker-registry openssl python3 curl; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

# ------------------------------------------------------------------------------ disk --
TMPBASE=${BENCH_TMPDIR:-/tmp}
# big blob: 3 paths x 3 upstreams (plain emulator, distribution, TLS emulator) stored once each +
# 8 for the RSS test, +2 GiB headroom
need_mib=$(( BIG_MIB * 17 + 2048 ))
avail_mib=$(df -Pm "$TMPBASE" | awk 'NR==2 {print $4}')
log "disk: $(df -h "$TMPBASE" | awk 'NR==2 {print $4" free on "$6}'), need ~${need_mib} MiB"
(( avail_mib > need_mib )) || die "not enough space in $TMPBASE (${avail_mib} MiB free, need ${need_mib})"

# ----------------------------------------------------------------------------- build --
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
  for attempt in 1 2 3 4 5; do
    if cargo build --release --bin tcr-adapter >&2; then break; fi
    (( attempt < 5 )) || die "cargo build --release keeps failing"
    log "build failed (the tree may be mid-edit), retrying in 60 s"; sleep 60
  done
fi
[[ -x $BIN ]] || die "$BIN missing"
# The commit the binary was built from (recorded now: the shared tree may move during the run).
git_sha=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || git_sha="$git_sha (+ uncommitted changes in src/)"
[[ ${BENCH_SKIP_BUILD:-0} == 1 ]] && git_sha="$git_sha (BENCH_SKIP_BUILD=1: binary not rebuilt, may be older)"
cp "$BIN" "$TMPBASE/tcr-adapter.bench.$$"   # a private copy: concurrent builds cannot swap it
BIN=$TMPBASE/tcr-adapter.bench.$$

# ------------------------------------------------------------------- processes, trap --
WORK=$(mktemp -d "$TMPBASE/tcr-bench.XXXXXX")
mkdir -p "$WORK/logs"
export BENCH_RESULTS=$WORK/results.jsonl
: >"$BENCH_RESULTS"
PIDS=()
cleanup() {
  local rc=$?
  stop_pids "${PIDS[@]}"
  if (( rc != 0 )); then
    log "failed (exit $rc); last log lines:"
    tail -n 5 "$WORK"/logs/*.log >&2 2>/dev/null || true
  fi
  rm -rf "$WORK" "$BIN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r EREG EAPI DREG A1 A2 N1 N2 < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(7)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)

wait_http() { # url name
  for _ in $(seq 1 200); do
    if curl -s -o /dev/null "$1"; then return 0; fi
    sleep 0.05
  done
  die "$2 did not come up at $1"
}

log "starting the emulator (registry :$EREG, API :$EAPI)"
env TCR_ADAPTER__EMULATOR__REGISTRY_LISTEN=127.0.0.1:$EREG \
    TCR_ADAPTER__EMULATOR__API_LISTEN=127.0.0.1:$EAPI \
    TCR_ADAPTER__EMULATOR__DATA_DIR="$WORK/emulator" \
    TCR_ADAPTER__LOG__LEVEL=warn \
    "$BIN" emulator >"$WORK/logs/emulator.log" 2>&1 &
EMU_PID=$!; PIDS+=("$EMU_PID")
wait_http "http://127.0.0.1:$EREG/v2/" emulator
wait_http "http://127.0.0.1:$EAPI/metrics" "emulator API"

log "setup: long-term instance token (CreateInstanceToken) and namespaces (official SDK)"
# skopeo: one fresh namespace per (path, upstream, run), so no run finds the blobs of another
sk_ns() { echo "sk-$1-${2:0:3}-r$3"; }  # path upstream run
SK_NS=$(for p in direct adapter; do for up in emulator distribution; do
  for r in $(seq 1 "$RUNS"); do printf ',%s' "$(sk_ns "$p" "$up" "$r")"; done; done; done)
read -r DUSER DTOKEN < <($M setup --api "127.0.0.1:$EAPI" --secret-id $SID --secret-key $SKEY \
  --region $REGION --registry-id $REGID --namespaces "bench-direct,bench-adapter,bench-nginx,lat$SK_NS")

log "starting CNCF distribution (:$DREG), token auth against the emulator's realm"
mkdir -p "$WORK/distribution"
openssl req -x509 -new -key "$WORK/emulator/keys/signing.pem" -subj "/CN=tcr-emulator" -days 2 \
  -out "$WORK/distribution/token.crt" 2>/dev/null
cat >"$WORK/distribution/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/distribution/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$DREG
  secret: benchmark-secret
auth:
  token:
    realm: http://127.0.0.1:$EREG/service/token
    service: harbor-registry
    issuer: tcr-emulator
    rootcertbundle: $WORK/distribution/token.crt
EOF
docker-registry serve "$WORK/distribution/config.yml" >"$WORK/logs/distribution.log" 2>&1 &
DIST_PID=$!; PIDS+=("$DIST_PID")
wait_http "http://127.0.0.1:$DREG/v2/" distribution

start_adapter() { # name port upstream_url
  serve_adapter "$WORK/logs/$1.log" TCR_ADAPTER__SERVER__LISTEN=127.0.0.1:$2 \
    TCR_ADAPTER__TCR__REGISTRY_URL="$3" TCR_ADAPTER__TCR__API_ENDPOINT=http://127.0.0.1:$EAPI
}
log "starting the adapters (:$A1 -> emulator, :$A2 -> distribution)"
start_adapter adapter-emulator "$A1" "http://127.0.0.1:$EREG"; A1_PID=$!; PIDS+=("$A1_PID")
start_adapter adapter-distribution "$A2" "http://127.0.0.1:$DREG"; A2_PID=$!; PIDS+=("$A2_PID")
wait_http "http://127.0.0.1:$A1/healthz" adapter
wait_http "http://127.0.0.1:$A2/healthz" adapter

log "starting nginx (:$N1 -> emulator, :$N2 -> distribution)"
mkdir -p "$WORK/nginx/tmp"
nginx_server() { # listen upstream
  cat <<EOF
  server {
    listen 127.0.0.1:$1;
    client_max_body_size 0;
    chunked_transfer_encoding on;
    location / {
      proxy_pass http://$2;
$(nginx_proxy_settings)
      proxy_connect_timeout 60s;
    }
  }
EOF
}
cat >"$WORK/nginx/nginx.conf" <<EOF
$(nginx_conf_head "$WORK/nginx" "$WORK/logs/nginx.log")
  upstream emulator { server 127.0.0.1:$EREG; keepalive 64; }
  upstream distribution { server 127.0.0.1:$DREG; keepalive 64; }
$(nginx_server "$N1" emulator)
$(nginx_server "$N2" distribution)
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/logs/nginx.log" >"$WORK/logs/nginx.out" 2>&1 &
NGINX_PID=$!; PIDS+=("$NGINX_PID")
wait_http "http://127.0.0.1:$N1/v2/" nginx
wait_http "http://127.0.0.1:$N2/v2/" nginx

# ----------------------------------------------------------------------- path table --
# path_args <upstream> <path> → the connection arguments of measure.py
path_args() {
  local up=$1 p=$2 ureg
  if [[ $up == emulator ]]; then ureg=$EREG; else ureg=$DREG; fi
  case $p in
    direct)  echo "--base http://127.0.0.1:$ureg --realm http://127.0.0.1:$EREG --service harbor-registry --user $DUSER --password $DTOKEN" ;;
    nginx)   local n=$N1; [[ $up == emulator ]] || n=$N2
             echo "--base http://127.0.0.1:$n --realm http://127.0.0.1:$N1 --service harbor-registry --user $DUSER --password $DTOKEN" ;;
    adapter) local a=$A1; [[ $up == emulator ]] || a=$A2
             echo "--base http://127.0.0.1:$a --service tcr-adapter --user $SID --password $SKEY" ;;
  esac
}
PATHS=(direct adapter nginx)

# cpu_args <upstream> <path> → whose CPU seconds per GiB a blob figure reports
cpu_args() {
  local up=$1 p=$2 upid
  if [[ $up == emulator ]]; then upid=$EMU_PID; else upid=$DIST_PID; fi
  case $p in
    direct)  echo "--cpu upstream=$upid" ;;
    adapter) local a=$A1_PID; [[ $up == emulator ]] || a=$A2_PID
             echo "--cpu upstream=$upid --cpu proxy=$a" ;;
    nginx)   echo "--cpu upstream=$upid --cpu proxy=$NGINX_PID" ;;  # + its worker processes
  esac
}

blob_round() { # upstream run
  local up=$1 r=$2 p
  for p in "${PATHS[@]}"; do
    # shellcheck disable=SC2046
    $M blobs $(path_args "$up" "$p") $(cpu_args "$up" "$p") --upstream "$up" --path "$p" --run "$r" --workdir "$WORK" \
      --repo "bench-$p/big" --tag "$up-$p-big" --size $BIG --op push --test "push ${BIG_MIB} MiB"
    # shellcheck disable=SC2046
    $M blobs $(path_args "$up" "$p") $(cpu_args "$up" "$p") --upstream "$up" --path "$p" --run "$r" --workdir "$WORK" \
      --repo "bench-$p/big" --tag "$up-$p-big" --size $BIG --op pull --test "pull ${BIG_MIB} MiB"
  done
  for p in "${PATHS[@]}"; do
    # shellcheck disable=SC2046
    $M blobs $(path_args "$up" "$p") $(cpu_args "$up" "$p") --upstream "$up" --path "$p" --run "$r" --workdir "$WORK" \
      --repo "bench-$p/small" --tag "$up-$p-small" --size $SMALL --count $SMALL_COUNT --op push \
      --test "push ${SMALL_COUNT}x1 MiB"
    # shellcheck disable=SC2046
    $M blobs $(path_args "$up" "$p") $(cpu_args "$up" "$p") --upstream "$up" --path "$p" --run "$r" --workdir "$WORK" \
      --repo "bench-$p/small" --tag "$up-$p-small" --size $SMALL --count $SMALL_COUNT --op pull \
      --test "pull ${SMALL_COUNT}x1 MiB"
  done
}

TLS_ONLY=${BENCH_TLS_ONLY:-0}
if [[ $TLS_ONLY != 1 ]]; then
# ------------------------------------------------------------------ 1. throughput --
for up in emulator distribution; do
  for r in $(seq 1 "$RUNS"); do
    log "blob throughput, upstream $up, run $r/$RUNS"
    blob_round "$up" "$r"
  done
done

# ------------------------------------------------------- 2. + 4. latency, tokens/s --
log "latency: pushing a small image lat/app:v1"
# shellcheck disable=SC2046
read -r CONFIG LAYER MDIGEST < <($M image $(path_args emulator direct) --repo lat/app)
scope="repository:lat/app:pull"
# shellcheck disable=SC2046
TOK_DIRECT=$($M token $(path_args emulator direct) --scope "$scope")
# shellcheck disable=SC2046
TOK_ADAPTER=$($M token $(path_args emulator adapter) --scope "$scope")
b64() { printf '%s' "$1" | base64 -w0; }
declare -A BASE=([direct]=http://127.0.0.1:$EREG [adapter]=http://127.0.0.1:$A1 [nginx]=http://127.0.0.1:$N1)
declare -A BEARER=([direct]=$TOK_DIRECT [adapter]=$TOK_ADAPTER [nginx]=$TOK_DIRECT)
declare -A SERVICE=([direct]=harbor-registry [adapter]=tcr-adapter [nginx]=harbor-registry)
declare -A BASIC=([direct]="Basic $(b64 "$DUSER:$DTOKEN")" [adapter]="Basic $(b64 "$SID:$SKEY")" [nginx]="Basic $(b64 "$DUSER:$DTOKEN")")
for r in $(seq 1 "$RUNS"); do
  log "small-request latency (wrk -t1 -c1 ${WRK_SECS}s), run $r/$RUNS"
  for p in "${PATHS[@]}"; do
    common=(--upstream emulator --path "$p" --run "$r" --duration "$WRK_SECS" --kind latency)
    # wrk 4.1 cannot measure HEAD (it waits for the Content-Length body that never comes):
    # GET the same routes with tiny bodies (manifest ~400 B, config blob ~100 B) instead.
    $M wrk "${common[@]}" --test "manifest GET" --method GET --auth "Bearer ${BEARER[$p]}" \
      --url "${BASE[$p]}/v2/lat/app/manifests/v1"
    $M wrk "${common[@]}" --test "blob GET" --method GET --auth "Bearer ${BEARER[$p]}" \
      --url "${BASE[$p]}/v2/lat/app/blobs/$CONFIG"
    $M wrk "${common[@]}" --test "token GET" --method GET --auth "${BASIC[$p]}" \
      --url "${BASE[$p]}/service/token?service=${SERVICE[$p]}&scope=repository%3Alat%2Fapp%3Apull"
  done
  log "token throughput (wrk -t2 -c16 ${WRK_SECS}s), run $r/$RUNS"
  for p in direct adapter; do
    $M wrk --upstream emulator --path "$p" --run "$r" --duration "$WRK_SECS" --kind throughput \
      --threads 2 --conns 16 --test "tokens/s" --method GET --auth "${BASIC[$p]}" \
      --url "${BASE[$p]}/service/token?service=${SERVICE[$p]}&scope=repository%3Alat%2Fapp%3Apull"
  done
done

# ------------------------------------------------------------------------ 3. RSS --
for r in $(seq 1 "$RUNS"); do
  log "adapter peak RSS during 8 concurrent ${BIG_MIB} MiB uploads, run $r/$RUNS"
  # shellcheck disable=SC2046
  $M rss $(path_args emulator adapter) --pid "$A1_PID" --upstream emulator --path adapter --run "$r" \
    --workdir "$WORK" --repo bench-adapter/rss --tag rss --size $BIG --count 8 --parallel 8 \
    --test "peak RSS, 8 x ${BIG_MIB} MiB uploads"
done

# ----------------------------------------------------------------- 5. skopeo copy --
log "building $SYNC_IMAGES OCI images (3 layers each)"
$M layouts --dir "$WORK/layout" --count $SYNC_IMAGES
for up in emulator distribution; do
  for r in $(seq 1 "$RUNS"); do
    log "skopeo copy x$SYNC_IMAGES, upstream $up, run $r/$RUNS (direct and adapter take turns)"
    if [[ $up == emulator ]]; then ddest=127.0.0.1:$EREG; adest=127.0.0.1:$A1
    else ddest=127.0.0.1:$DREG; adest=127.0.0.1:$A2; fi
    # fresh namespace and a fresh, empty skopeo HOME (blob-info cache) per path and run
    $M skopeo --upstream "$up" --run "$r" --test "skopeo copy ${SYNC_IMAGES} images" \
      --dir "$WORK/layout" --count $SYNC_IMAGES --workdir "$WORK" \
      --target "direct,$ddest,$(sk_ns direct "$up" "$r")/,$DUSER,$DTOKEN" \
      --target "adapter,$adest,$(sk_ns adapter "$up" "$r")/,$SID,$SKEY"
  done
done

fi  # TLS_ONLY

# ------------------------------------------------------------ 6. production path: TLS --
# shellcheck source=scripts/bench-tls.sh
source "$ROOT/scripts/bench-tls.sh"

# ------------------------------------------------------- 7. WAN model (BENCH_WAN=1) --
# Its own emulator and adapter per latency; rows go to $BENCH_RESULTS (see scripts/bench-wan.sh).
if [[ ${BENCH_WAN:-0} == 1 ]]; then
  BENCH_WAN_BIN=$BIN BENCH_TMPDIR=$TMPBASE "$ROOT/scripts/bench-wan.sh"
fi

# -------------------------------------------------------------------------- report --
T_END=$(date +%s)
cat >"$WORK/meta.json" <<EOF
{
  "mode": "$([[ $QUICK == 1 ]] && echo quick || echo full)",
  "runs": $RUNS, "big_mib": $BIG_MIB, "small_count": $SMALL_COUNT, "sync_images": $SYNC_IMAGES,
  "wrk_secs": $WRK_SECS, "seconds": $((T_END - T_START)),
  "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "nproc": "$(nproc)",
  "mem": "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)",
  "cpu": "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)",
  "kernel": "$(uname -r)",
  "load": "$LOAD_START at start, $(cut -d" " -f1-3 /proc/loadavg) at the end (1/5/15 min)",
  "rustc": "$(rustc -V)",
  "git": "$git_sha",
  "nginx": "$(nginx -v 2>&1 | sed 's/^nginx version: //')",
  "skopeo": "$(skopeo --version)",
  "distribution": "$(docker-registry --version)",
  "wrk": "$(wrk -v 2>&1 | head -1 | awk '{print $1" "$2}')",
  "python": "$(python3 -V)"
}
EOF
# A partial run, or a report written elsewhere (BENCH_OUT), does not replace the last results.
if [[ $TLS_ONLY != 1 && $OUT == "$ROOT/BENCHMARKS.md" ]]; then
  cp "$BENCH_RESULTS" "$ROOT/bench/last-results.jsonl"
  cp "$WORK/meta.json" "$ROOT/bench/last-meta.json"  # re-render: bench/report.py --meta … --results …
fi
python3 "$ROOT/bench/report.py" --meta "$WORK/meta.json" --results "$BENCH_RESULTS" --out "$OUT" \
  --notes "$ROOT/bench/NOTES.md"
log "done in $((T_END - T_START)) s; report in $OUT"
