#!/usr/bin/env bash
# WAN benchmark (issues 17, 24): a project of N images sharing base layers pushed into the TCR
# emulator across a modelled WAN (`emulator.faults.latency_ms` per request,
# `emulator.faults.bandwidth_kib_per_sec` per connection), direct and through the adapter
# (`tcr-adapter serve` pointed at that emulator: defaults, layer dedup off, `wan.pipeline`), one
# image after another and ten at a time, by Harbor-faithful clients (bench/harbor_push.py with
# bench/harbor_client.py: per generation, a token per request scope, Harbor's token cache, one
# job per image) and by skopeo.
#
#   scripts/bench-wan.sh                                  # on its own (builds the release binary)
#   scripts/bench-wan.sh --done-when                      # issue 24's "Done when" matrix (below)
#   scripts/bench-wan.sh --fleet                          # issue 26: 3 replicas + nginx + Redis
#   BENCH_WAN=1 scripts/bench.sh                          # from bench.sh, with its binary
#   BENCH_WAN_IMAGES=3 BENCH_WAN_LAYER_SIZES=524288,262144,65536 scripts/bench-wan.sh   # small
#   BENCH_WAN_CLIENTS=harbor2.0 BENCH_WAN_CONFIGS="0:0 25:0 100:0 25:8192" scripts/bench-wan.sh
#
# --done-when: 12 images (8 + 4 MiB shared, 1 MiB own), 25 ms and 100 ms per request, clients
# harbor1.10 harbor2.0 harbor2.9c, one and ten at a time, paths direct / adapter (defaults) /
# adapter-pipeline, 3 runs each (interleaved: direct and adapter runs alternate), medians; the
# table says per adapter row whether it meets the issue's bar (defaults <= 0.5 x direct time,
# pipeline one at a time <= 0.35 x, blob bytes <= 1.1 x distinct content). Any knob below set in
# the environment still wins.
#
# Knobs: BENCH_WAN_IMAGES (N, default 12), BENCH_WAN_LAYER_SIZES (bytes of the layers of each
# image, default 8 MiB,4 MiB,1 MiB; the first two are the shared base layers, the last is the
# image's own), BENCH_WAN_LATENCIES (default "0 25", ms per request), BENCH_WAN_BANDWIDTHS (caps
# in KiB/s per connection, default "0" = unlimited; e.g. "0 10240"), BENCH_WAN_PARALLEL (default
# "1 10"), BENCH_WAN_CONFIGS (overrides the two above: "latency_ms:KiB/s" pairs, e.g.
# "0:0 25:0 100:0 25:8192"), BENCH_WAN_RUNS (runs per row, default 1; the table shows medians),
# BENCH_WAN_PATHS (default "direct adapter-nodedup adapter adapter-pipeline"; also "fleet" and
# "fleet-pipeline": three adapters sharing a Redis behind an nginx round-robin balancer; "fleet1"
# and "fleet1-pipeline": one adapter behind the same balancer and Redis, the balancer's own cost; straight
# to the emulator, through an adapter with `TCR_ADAPTER__WAN__DEDUP=false`, through an adapter
# with the default `wan.dedup = true`, through an adapter with `wan.pipeline = true` too),
# BENCH_WAN_CLIENTS (default "harbor1.10 harbor2.0 harbor2.9c skopeo nocache"):
#   harbor1.8 / harbor1.10 / harbor2.0 / harbor2.9: bench/harbor_push.py --harbor <generation>,
#     Harbor's replication push as that generation sends it (monolithic PUTs; 1.8.0 with chunked
#     transfer encoding), one job per image with its own token cache, never a mount;
#   harbor2.9c: Harbor 2.9 with copy-by-chunk, REPLICATION_CHUNK_SIZE = BENCH_WAN_CHUNK_SIZE
#     (default 2 MiB; Harbor's own default, 10 MiB, is larger than every layer here, and a blob
#     of at most one chunk goes monolithic without a HEAD);
#   onetoken: NOT Harbor -- the client of the WAN rows before issue 24 (one pull,push token for
#     every request), kept to explain those rows;
#   skopeo: keeps skopeo's blob-info cache for the whole run, so it mounts the base layers it
#     already pushed, as skopeo does; nocache: every copy starts with an empty cache;
# BENCH_WAN_ROUTES=1 (log the emulator's requests of every run by route, method and status),
# BENCH_WAN_BIN (binary to run; default target/release/tcr-adapter, built unless
# BENCH_SKIP_BUILD=1), BENCH_TMPDIR (default /tmp), BENCH_RESULTS (JSON lines appended, as
# bench/measure.py writes them), BENCH_WAN_OUT (the table as TSV), BENCH_ADAPTER_LOG (the
# adapters' log level, default warn) with BENCH_WAN_KEEP=1 (the logs are kept, not removed),
# HARBOR_PUSH_TRACE=1 (the Harbor client's requests, one line each).
#
# Per row: wall time of the whole push, and what the emulator saw during it (its /metrics on the
# API port): data-plane requests, and blob bytes received (request bodies of upload routes); the
# adapter's dedup mounts (its /metrics); and the ratios of time, requests and blob bytes to the
# direct row of the same client, parallelism and WAN (medians over the runs). Every run pushes
# fresh random content into its own namespaces (nothing a previous run pushed can be mounted or
# found); every WAN setting gets a fresh emulator data directory and fresh adapters.
# Every process started here is stopped by PID on exit; the temporary directory is removed.
# The log of each run also says how busy the machine's cores were during it.
# skopeo's blob-info cache: as root it lives in /var/lib/containers/cache, shared with whatever
# else runs skopeo on this machine; here each run gets a fresh private HOME/XDG tree and
# `_CONTAINERS_ROOTLESS_UID` so the cache lands there (checked), which clears it between runs
# without touching the shared one.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ ${1:-} == --done-when ]]; then
  : "${BENCH_WAN_IMAGES:=12}" "${BENCH_WAN_LAYER_SIZES:=8388608,4194304,1048576}"
  : "${BENCH_WAN_CONFIGS:=25:0 100:0}" "${BENCH_WAN_CLIENTS:=harbor1.10 harbor2.0 harbor2.9c}"
  : "${BENCH_WAN_PARALLEL:=1 10}" "${BENCH_WAN_RUNS:=3}"
  : "${BENCH_WAN_PATHS:=direct adapter adapter-pipeline}"
elif [[ ${1:-} == --fleet ]]; then
  # Issue 26's "Done when": three adapters + nginx + Redis vs one adapter, ten at a time.
  : "${BENCH_WAN_IMAGES:=12}" "${BENCH_WAN_LAYER_SIZES:=8388608,4194304,1048576}"
  : "${BENCH_WAN_CONFIGS:=25:0}" "${BENCH_WAN_CLIENTS:=harbor2.0}"
  : "${BENCH_WAN_PARALLEL:=10}" "${BENCH_WAN_RUNS:=3}"
  : "${BENCH_WAN_PATHS:=direct adapter fleet adapter-pipeline fleet-pipeline}"
elif [[ -n ${1:-} ]]; then
  echo "usage: $0 [--done-when | --fleet]" >&2; exit 2
fi
N=${BENCH_WAN_IMAGES:-12}
LAYER_SIZES=${BENCH_WAN_LAYER_SIZES:-8388608,4194304,1048576}
LATENCIES=${BENCH_WAN_LATENCIES:-"0 25"}
BANDWIDTHS=${BENCH_WAN_BANDWIDTHS:-0}
PARALLELS=${BENCH_WAN_PARALLEL:-"1 10"}
CLIENTS=${BENCH_WAN_CLIENTS:-"harbor1.10 harbor2.0 harbor2.9c skopeo nocache"}
RUNS=${BENCH_WAN_RUNS:-1}
CHUNK=${BENCH_WAN_CHUNK_SIZE:-2097152}
PATHS=${BENCH_WAN_PATHS:-"direct adapter-nodedup adapter adapter-pipeline"}
CONFIGS=${BENCH_WAN_CONFIGS:-}
if [[ -z $CONFIGS ]]; then
  for b in $BANDWIDTHS; do for l in $LATENCIES; do CONFIGS+="$l:$b "; done; done
fi
BIN=${BENCH_WAN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/tcr-adapter}
TMPBASE=${BENCH_TMPDIR:-/tmp}
RESULTS=${BENCH_RESULTS:-/dev/null}
M="python3 $ROOT/bench/measure.py"
# shellcheck source=scripts/lib/bench.sh
source "$ROOT/scripts/lib/bench.sh"

wlog() { printf '[bench-wan %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
wdie() { wlog "ERROR: $*"; exit 1; }

for tool in python3 curl openssl xargs; do
  command -v "$tool" >/dev/null || wdie "$tool is not installed"
done
python3 -c "import requests" 2>/dev/null || wdie "python3 requests is missing (scripts/install-test-deps.sh)"
case " $CLIENTS " in *" skopeo "*|*" nocache "*) command -v skopeo >/dev/null || wdie "skopeo is not installed";; esac
# bench/harbor_push.py --harbor <generation> [--chunk-size] for a Harbor-like client ("" otherwise).
harbor_args() { # client
  case $1 in
    harbor1.8) echo "--harbor 1.8" ;; harbor1.10) echo "--harbor 1.10" ;;
    harbor2.0) echo "--harbor 2.0" ;; harbor2.9) echo "--harbor 2.9" ;;
    harbor2.9c) echo "--harbor 2.9 --chunk-size $CHUNK" ;; onetoken) echo "--harbor one-token" ;;
    skopeo|nocache) echo "" ;;
    harbor20) wdie "harbor20 was the one-token client: now onetoken (not Harbor) or harbor2.0" ;;
    *) wdie "unknown client $1" ;;
  esac
}
for c in $CLIENTS; do harbor_args "$c" >/dev/null; done
# The Harbor clients' wire behaviour (scopes, token cache, PUT framing, chunks), checked first.
case " $CLIENTS " in *" harbor"*)
  (cd "$ROOT/bench" && python3 harbor_client_check.py >&2) || wdie "bench/harbor_client_check.py failed" ;;
esac
if [[ ${BENCH_SKIP_BUILD:-0} != 1 && -z ${BENCH_WAN_BIN:-} ]]; then
  (cd "$ROOT" && cargo build --release --bin tcr-adapter >&2)
fi
[[ -x $BIN ]] || wdie "$BIN missing"

WWORK=$(mktemp -d "$TMPBASE/tcr-bench-wan.XXXXXX")
mkdir -p "$WWORK/logs"
WPIDS=()
wcleanup() {
  local rc=$?
  stop_pids "${WPIDS[@]}"
  if (( rc != 0 )); then tail -n 5 "$WWORK"/logs/*.log >&2 2>/dev/null || true; fi
  if [[ ${BENCH_WAN_KEEP:-0} == 1 ]]; then echo "logs kept in $WWORK/logs" >&2; else rm -rf "$WWORK"; fi
}
trap wcleanup EXIT
trap 'exit 130' INT TERM

free_ports() { # count
  python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

wait_up() { # url name
  for _ in $(seq 1 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done
  wdie "$2 did not come up at $1"
}

# Sum of the emulator's counters matching a pattern (Prometheus text from its API port); printed
# with %.0f, not %d: mawk's %d stops at 2^31 - 1, which the upload byte counter passes after ~13
# pushes of this project (every later row then read 0 bytes).
metric_sum() { # api_port grep-pattern
  curl -s "http://127.0.0.1:$1/metrics" | { grep -E "$2" || true; } | awk '{s += $NF} END {printf "%.0f\n", s}'
}

# A fresh, private skopeo HOME whose blob-info cache lands inside it (see above).
fresh_home() {
  local home
  home=$(mktemp -d "$WWORK/skopeo-home.XXXXXX")
  mkdir -p "$home"/{data,config,cache,run}
  chmod 700 "$home"/*
  echo "$home"
}

# One image: copy_one home layout dest prefix creds i
copy_one() {
  local home=$1 layout=$2 dest=$3 prefix=$4 creds=$5 i=$6
  env HOME="$home" XDG_DATA_HOME="$home/data" XDG_CONFIG_HOME="$home/config" \
      XDG_CACHE_HOME="$home/cache" XDG_RUNTIME_DIR="$home/run" _CONTAINERS_ROOTLESS_UID=1000 \
    skopeo copy --quiet --dest-tls-verify=false --dest-creds "$creds" \
      "oci:$layout:img$i" "docker://$dest/${prefix}img$i:v1"
}
export -f copy_one fresh_home
export WWORK

wlog "project: $N images (layers $LAYER_SIZES, all but the last shared by all); fresh random content per run"
read -r -a SIZES_ARR <<<"${LAYER_SIZES//,/ }"

TABLE=$WWORK/table.tsv
printf 'latency_ms\tbandwidth_kib\tclient\tpath\tparallel\trun\tseconds\trequests\tblob_MB_received\tdistinct_MB\tmounts\n' >"$TABLE"

start_adapter() { # port dedup(true|false) log [pipeline(true|false)]
  serve_adapter "$3" TCR_ADAPTER__SERVER__LISTEN=127.0.0.1:$1 \
    TCR_ADAPTER__TCR__REGISTRY_URL=http://127.0.0.1:$EREG \
    TCR_ADAPTER__TCR__API_ENDPOINT=http://127.0.0.1:$EAPI TCR_ADAPTER__WAN__DEDUP="$2" \
    TCR_ADAPTER__WAN__PIPELINE="${4:-false}" TCR_ADAPTER__WAN__SPOOL_DIR="$WWORK/spool"
  LAST_PID=$!; WPIDS+=("$LAST_PID")
}

# Namespace names are at most 30 characters: short forms of client and path.
ns_of() { # client path parallel run
  local c=$1 p=$2
  case $p in direct) p=d;; adapter) p=a;; adapter-nodedup) p=an;; adapter-pipeline) p=ap;;
    fleet) p=f;; fleet-pipeline) p=fp;; fleet1) p=f1;; fleet1-pipeline) p=f1p;; esac
  case $c in harbor1.8) c=h18;; harbor1.10) c=h110;; harbor2.0) c=h20;; harbor2.9) c=h29;;
    harbor2.9c) c=h29c;; onetoken) c=ot;; skopeo) c=sk;; nocache) c=nc;; esac
  echo "wan-$c-$p-p$3-r$4"
}

# The machine's CPU busy share between two /proc/stat lines (all cores; iowait counts as idle):
# near 100 % a path's extra CPU becomes time.
cpu_busy() {
  awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, " "); split(b, y, " "); t = 0
    for (i = 2; i <= n; i++) t += y[i] - x[i]
    idle = (y[5] - x[5]) + (y[6] - x[6])
    if (t > 0) printf "%.0f %%", 100 * (t - idle) / t; else printf "-" }'
}

run_no=0
for CONFIG in $CONFIGS; do
  lat=${CONFIG%%:*}; BANDWIDTH=${CONFIG##*:}
  # A port picked by free_ports can be taken by someone else before the emulator binds it: retry.
  for attempt in 1 2 3; do
    read -r EREG EAPI AP APN APP < <(free_ports 5)
    wlog "latency ${lat} ms, bandwidth ${BANDWIDTH} KiB/s: emulator :$EREG (API :$EAPI), adapter :$AP (dedup), :$APN (no dedup), :$APP (dedup + pipeline)"
    env TCR_ADAPTER__EMULATOR__REGISTRY_LISTEN=127.0.0.1:$EREG \
        TCR_ADAPTER__EMULATOR__API_LISTEN=127.0.0.1:$EAPI \
        TCR_ADAPTER__EMULATOR__DATA_DIR="$WWORK/emulator-$lat-$BANDWIDTH-$attempt" \
        TCR_ADAPTER__EMULATOR__FAULTS__LATENCY_MS="$lat" \
        TCR_ADAPTER__EMULATOR__FAULTS__BANDWIDTH_KIB_PER_SEC="$BANDWIDTH" \
        TCR_ADAPTER__LOG__LEVEL=warn \
        "$BIN" emulator >"$WWORK/logs/emulator-$lat-$BANDWIDTH.log" 2>&1 &
    emu_pid=$!; WPIDS+=("$emu_pid")
    for _ in $(seq 1 200); do
      curl -s -o /dev/null "http://127.0.0.1:$EREG/v2/" && break
      kill -0 "$emu_pid" 2>/dev/null || break
      sleep 0.05
    done
    kill -0 "$emu_pid" 2>/dev/null && break
    wlog "emulator exited ($(tail -n 1 "$WWORK/logs/emulator-$lat-$BANDWIDTH.log")); new ports"
  done
  wait_up "http://127.0.0.1:$EREG/v2/" emulator
  wait_up "http://127.0.0.1:$EAPI/metrics" "emulator API"
  start_adapter "$AP" true "$WWORK/logs/adapter-$lat-$BANDWIDTH.log"; ad_pid=$LAST_PID
  start_adapter "$APN" false "$WWORK/logs/adapter-nodedup-$lat-$BANDWIDTH.log"; adn_pid=$LAST_PID
  wait_up "http://127.0.0.1:$AP/healthz" adapter
  wait_up "http://127.0.0.1:$APN/healthz" "adapter (no dedup)"
  if [[ " $PATHS " == *" adapter-pipeline "* ]]; then
    start_adapter "$APP" true "$WWORK/logs/adapter-pipeline-$lat-$BANDWIDTH.log" true; adp_pid=$LAST_PID
    wait_up "http://127.0.0.1:$APP/healthz" "adapter (pipeline)"
  fi

  # Fleets (issue 26): three adapters sharing one Redis ([state] redis_url) and the same keys,
  # behind an nginx round-robin balancer (no affinity: every request may reach another replica).
  FLEET_F= FLEET_FP= FLEET_1= FLEET_1P=
  if [[ " $PATHS " == *" fleet"* ]]; then
    command -v redis-server >/dev/null || wdie "redis-server is not installed"
    command -v nginx >/dev/null || wdie "nginx is not installed"
    read -r RPORT < <(free_ports 1)
    redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no >"$WWORK/logs/redis-$lat.log" 2>&1 &
    WPIDS+=("$!"); FLEET_PIDS=("$!")
    start_fleet() { # name pipeline(true|false) [replicas, default 3]: the balancer's port
      local name=$1 pipe=$2 lbp sign seal ports port
      read -r lbp ports < <(free_ports $((1 + ${3:-3})))
      sign=$(openssl rand -base64 32); seal=$(openssl rand -base64 32)
      for port in $ports; do
        serve_adapter "$WWORK/logs/$name-$port-$lat.log" TCR_ADAPTER__SERVER__LISTEN=127.0.0.1:$port \
          TCR_ADAPTER__SERVER__PUBLIC_URL=http://127.0.0.1:$lbp \
          TCR_ADAPTER__TCR__REGISTRY_URL=http://127.0.0.1:$EREG TCR_ADAPTER__TCR__API_ENDPOINT=http://127.0.0.1:$EAPI \
          TCR_ADAPTER__WAN__PIPELINE="$pipe" TCR_ADAPTER__WAN__SPOOL_DIR="$WWORK/spool-$name-$port" \
          TCR_ADAPTER__STATE__REDIS_URL="redis://127.0.0.1:$RPORT/0" TCR_ADAPTER__STATE__KEY_PREFIX="$name-$lat" \
          TCR_ADAPTER__AUTH__SIGNING_KEY="$sign" TCR_ADAPTER__AUTH__SEALING_KEY="$seal"
        WPIDS+=("$!"); FLEET_PIDS+=("$!")
        wait_up "http://127.0.0.1:$port/healthz" "$name replica"
      done
      mkdir -p "$WWORK/nginx-$name/tmp"
      cat >"$WWORK/nginx-$name/nginx.conf" <<NGINX
daemon off; master_process off; worker_processes 1; pid $WWORK/nginx-$name/nginx.pid;
error_log $WWORK/logs/nginx-$name-$lat.log warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $WWORK/nginx-$name/tmp; proxy_temp_path $WWORK/nginx-$name/tmp;
  upstream fleet { $(for port in $ports; do printf 'server 127.0.0.1:%s; ' "$port"; done) keepalive 32; }
  server { listen 127.0.0.1:$lbp; client_max_body_size 0;
    location / { proxy_pass http://fleet; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$http_host; proxy_buffering off; proxy_request_buffering off; } } }
NGINX
      nginx -c "$WWORK/nginx-$name/nginx.conf" -p "$WWORK/nginx-$name" >/dev/null 2>&1 &
      WPIDS+=("$!"); FLEET_PIDS+=("$!")
      wait_up "http://127.0.0.1:$lbp/healthz" "$name balancer"
      FLEET_LB=$lbp; FLEET_PORTS=$ports
    }
    if [[ " $PATHS " == *" fleet "* ]]; then start_fleet fleet false; FLEET_F=$FLEET_LB; FLEET_F_PORTS=$FLEET_PORTS; fi
    if [[ " $PATHS " == *" fleet-pipeline "* ]]; then start_fleet fleetp true; FLEET_FP=$FLEET_LB; FLEET_FP_PORTS=$FLEET_PORTS; fi
    # One replica behind the same balancer and Redis: what the balancer's hop alone costs.
    if [[ " $PATHS " == *" fleet1 "* ]]; then start_fleet fleet1 false 1; FLEET_1=$FLEET_LB; FLEET_1_PORTS=$FLEET_PORTS; fi
    if [[ " $PATHS " == *" fleet1-pipeline "* ]]; then start_fleet fleet1p true 1; FLEET_1P=$FLEET_LB; FLEET_1P_PORTS=$FLEET_PORTS; fi
    wlog "fleets (3 replicas + nginx + Redis :$RPORT): defaults :${FLEET_F:-}, pipeline :${FLEET_FP:-}"
  fi

  # Every namespace of this WAN setting, created beforehand on all paths (the data path is measured).
  namespaces=()
  for c in $CLIENTS; do for p in $PATHS; do for par in $PARALLELS; do for r in $(seq 1 "$RUNS"); do
    namespaces+=("$(ns_of "$c" "$p" "$par" "$r")")
  done; done; done; done
  read -r DUSER DTOKEN < <($M setup --api "127.0.0.1:$EAPI" --secret-id $SID --secret-key $SKEY \
    --region $REGION --registry-id $REGID --namespaces "$(IFS=,; echo "${namespaces[*]}")")

  for c in $CLIENTS; do
    hargs=$(harbor_args "$c")
    for par in $PARALLELS; do
      for run in $(seq 1 "$RUNS"); do
      for p in $PATHS; do
        case $p in
          direct) dest=127.0.0.1:$EREG; user=$DUSER; pass=$DTOKEN; mport= ;;
          adapter) dest=127.0.0.1:$AP; user=$SID; pass=$SKEY; mport=$AP ;;
          adapter-nodedup) dest=127.0.0.1:$APN; user=$SID; pass=$SKEY; mport=$APN ;;
          adapter-pipeline) dest=127.0.0.1:$APP; user=$SID; pass=$SKEY; mport=$APP ;;
          fleet) dest=127.0.0.1:$FLEET_F; user=$SID; pass=$SKEY; mport=$FLEET_F_PORTS ;;
          fleet-pipeline) dest=127.0.0.1:$FLEET_FP; user=$SID; pass=$SKEY; mport=$FLEET_FP_PORTS ;;
          fleet1) dest=127.0.0.1:$FLEET_1; user=$SID; pass=$SKEY; mport=$FLEET_1_PORTS ;;
          fleet1-pipeline) dest=127.0.0.1:$FLEET_1P; user=$SID; pass=$SKEY; mport=$FLEET_1P_PORTS ;;
          *) wdie "unknown path $p" ;;
        esac
        ns=$(ns_of "$c" "$p" "$par" "$run")
        run_no=$((run_no + 1))
        layout=
        if [[ -z $hargs ]]; then  # skopeo: fresh content for this run
          layout=$WWORK/layout-$run_no
          $M layouts --dir "$layout" --count "$N" --layer-sizes "$LAYER_SIZES" --shared $((${#SIZES_ARR[@]} - 1))
          distinct=$(du -sb "$layout/blobs" | awk '{print $1}')
        fi
        if [[ ${BENCH_WAN_ROUTES:-0} == 1 ]]; then curl -s "http://127.0.0.1:$EAPI/metrics" >"$WWORK/m0"; fi
        req0=$(metric_sum "$EAPI" '^tcr_emulator_registry_requests_total\{')
        up0=$(metric_sum "$EAPI" '^tcr_emulator_body_bytes_total\{direction="received",route="upload"\}')
        # The adapter's /metrics: same text format, same summing.
        mounted() { local n=0 mp; for mp in $mport; do n=$((n + $(metric_sum "$mp" '^tcr_adapter_dedup_mounts_total\{result="mounted"\}'))); done; echo $n; }
        mnt0=0; [[ -n $mport ]] && mnt0=$(mounted)
        cpu0=$(head -n 1 /proc/stat)
        t0=$(date +%s.%N)
        if [[ -n $hargs ]]; then
          # shellcheck disable=SC2086  # $hargs: the generation's arguments, split on purpose
          out=$(python3 "$ROOT/bench/harbor_push.py" --registry "http://$dest" --user "$user" \
            --password "$pass" --namespace "$ns" --images "$N" --layer-sizes "$LAYER_SIZES" \
            --parallel "$par" $hargs)
          distinct=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["distinct_bytes"])' "$out")
          wlog "    client: $out"
        elif [[ $c == skopeo ]]; then
          home=$(fresh_home)
          seq 0 $((N - 1)) | xargs -P "$par" -I{} bash -c 'copy_one "$@"' _ "$home" "$layout" "$dest" "$ns/" "$user:$pass" {}
          if [[ -z $(ls -A "$home/data/containers/cache" 2>/dev/null) ]]; then
            wdie "skopeo did not keep its blob-info cache in $home/data/containers/cache"
          fi
        else
          seq 0 $((N - 1)) | xargs -P "$par" -I{} bash -c 'copy_one "$(fresh_home)" "$@"' _ "$layout" "$dest" "$ns/" "$user:$pass" {}
        fi
        t1=$(date +%s.%N)
        cpu1=$(head -n 1 /proc/stat)
        if [[ -n $layout ]]; then rm -rf "$layout"; fi
        req1=$(metric_sum "$EAPI" '^tcr_emulator_registry_requests_total\{')
        if [[ ${BENCH_WAN_ROUTES:-0} == 1 ]]; then  # what the emulator received, by route/method/status
          curl -s "http://127.0.0.1:$EAPI/metrics" >"$WWORK/m1"
          python3 - "$WWORK/m0" "$WWORK/m1" <<'EOF' >&2
import re, sys
def load(f):
    return {m.group(1): float(m.group(2)) for m in
            (re.match(r'tcr_emulator_registry_requests_total\{(.*)\} (\S+)$', l.strip()) for l in open(f)) if m}
a, b = load(sys.argv[1]), load(sys.argv[2])
for k in sorted(b):
    d = b[k] - a.get(k, 0)
    if d:
        print("      %5d  %s" % (d, k))
EOF
        fi
        up1=$(metric_sum "$EAPI" '^tcr_emulator_body_bytes_total\{direction="received",route="upload"\}')
        mounts=-
        if [[ -n $mport ]]; then
          mounts=$(( $(mounted) - mnt0 ))
        fi
        secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')
        # Harbor clients: their own clock (excludes python start-up and generating the content).
        if [[ -n $hargs ]]; then
          secs=$(python3 -c 'import json,sys; print("%.2f" % json.loads(sys.argv[1])["seconds"])' "$out")
        fi
        mb=$(awk -v a="$up0" -v b="$up1" 'BEGIN {printf "%.1f", (b - a) / 1e6}')
        dmb=$(awk -v b="$distinct" 'BEGIN {printf "%.1f", b / 1e6}')
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$lat" "$BANDWIDTH" "$c" "$p" "$par" "$run" "$secs" \
          "$((req1 - req0))" "$mb" "$dmb" "$mounts" >>"$TABLE"
        printf '{"test": "wan push %s images (%s, %s at a time, %s ms, %s KiB/s)", "upstream": "emulator", "path": "%s", "run": "%s", "value": %s, "unit": "s", "requests": %s, "blob_bytes": %s, "distinct_bytes": %s}\n' \
          "$N" "$c" "$par" "$lat" "$BANDWIDTH" "$p" "$run" "$secs" "$((req1 - req0))" "$((up1 - up0))" "$distinct" >>"$RESULTS"
        wlog "  $c $p x$par run $run: ${secs} s, $((req1 - req0)) requests, ${mb} MB of blobs (distinct ${dmb} MB), mounts $mounts, machine busy $(cpu_busy "$cpu0" "$cpu1")"
      done
      done
    done
  done
  kill "$ad_pid" "$adn_pid" ${adp_pid:-} "$emu_pid" ${FLEET_PIDS[@]:-} 2>/dev/null || true
  wait "$ad_pid" "$adn_pid" ${adp_pid:-} "$emu_pid" ${FLEET_PIDS[@]:-} 2>/dev/null || true
  adp_pid= FLEET_PIDS=()
done

# Medians over the runs, then ratios to the direct row of the same WAN setting, client and
# parallelism; for adapter rows, whether issue 24's bar is met.
python3 - "$TABLE" >"$WWORK/table-ratios.tsv" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
head, rows = rows[0], rows[1:]
groups = {}
for r in rows:
    groups.setdefault(tuple(r[:5]), []).append(r)
med = {}
for k, rs in groups.items():
    col = lambda i: statistics.median(float(r[i]) for r in rs)
    mounts = [r[10] for r in rs]
    med[k] = {"runs": len(rs), "seconds": col(6), "requests": col(7), "blob": col(8),
              "distinct": col(9),
              "mounts": "-" if "-" in mounts else "%g" % statistics.median(int(m) for m in mounts)}
print("\t".join(head[:5] + ["runs", "seconds", "requests", "blob_MB_received", "distinct_MB",
                            "mounts", "time_vs_direct", "requests_vs_direct", "blobMB_vs_direct",
                            "blobMB_vs_distinct", "issue24_bar"]))
for k, m in med.items():
    d = med.get(k[:3] + ("direct",) + k[4:])
    ratio = lambda f: m[f] / d[f] if d and d[f] else None
    fmt = lambda x: "-" if x is None else "%.2f" % x
    bd = m["blob"] / m["distinct"] if m["distinct"] else None
    t = ratio("seconds")
    bar = "-"
    if k[3] in ("adapter", "adapter-pipeline") and t is not None and bd is not None:
        limit = 0.35 if (k[3] == "adapter-pipeline" and k[4] == "1") else 0.5
        ok = t <= limit and bd <= 1.1
        bar = "%s(time<=%.2f,bytes<=1.10)" % ("met" if ok else "NOT-met", limit)
    if k[3] in ("fleet", "fleet-pipeline", "fleet1", "fleet1-pipeline") and bd is not None:
        # Issue 26: three replicas within 10 % of one adapter's time, bytes <= 1.1 x distinct.
        alone = "adapter-pipeline" if k[3].endswith("pipeline") else "adapter"
        one = med.get(k[:3] + (alone,) + k[4:])
        vs = m["seconds"] / one["seconds"] if one and one["seconds"] else None
        ok = vs is not None and vs <= 1.1 and bd <= 1.1
        bar = "%s(time_vs_one_adapter=%s<=1.10,bytes<=1.10)" % ("met" if ok else "NOT-met", fmt(vs))
    print("\t".join(list(k) + [str(m["runs"]), "%.2f" % m["seconds"], "%g" % m["requests"],
                               "%.1f" % m["blob"], "%.1f" % m["distinct"], m["mounts"],
                               fmt(t), fmt(ratio("requests")), fmt(ratio("blob")), fmt(bd), bar]))
EOF

printf '\nWAN push of %s images (layers %s bytes, all but the last shared), emulator-side counts;\n' "$N" "$LAYER_SIZES"
printf 'medians of %s run(s); ratios against the direct row of the same WAN setting, client and parallelism\n' "$RUNS"
column -t -s $'\t' "$WWORK/table-ratios.tsv"
if [[ -n ${BENCH_WAN_OUT:-} ]]; then cp "$WWORK/table-ratios.tsv" "$BENCH_WAN_OUT"; fi
exit 0
