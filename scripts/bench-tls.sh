# Sourced by scripts/bench.sh (not run on its own): the production path, TLS on both sides.
#
#   direct  : client →(HTTPS)→ emulator (self-signed CA)
#   adapter : client →(HTTPS)→ adapter →(HTTPS, tcr.ca_file)→ emulator
#   nginx   : client →(HTTPS)→ nginx →(HTTPS, proxy_ssl_verify with the same CA)→ emulator
#
# Figures (upstream "emulator-tls"): the big blob push/pull with CPU seconds per GiB, manifest GET
# latency, the skopeo copy of the 50 images, and the mount-heavy migration: 50 images sharing two
# base layers copied (a) into new repositories of one existing namespace and (b) each into a new
# namespace (which the adapter creates; for the direct path they are created beforehand, as TCR
# needs). Uses what bench.sh defines: $BIN $M $WORK $RUNS $BIG $BIG_MIB $SYNC_IMAGES PIDS log
# die wait_http.

read -r TREG TAPI TA TN < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
)
TDIR=$WORK/emulator-tls
log "TLS: starting the emulator in self-signed mode (registry :$TREG, API :$TAPI)"
env TCR_ADAPTER__EMULATOR__REGISTRY_LISTEN=127.0.0.1:$TREG \
    TCR_ADAPTER__EMULATOR__API_LISTEN=127.0.0.1:$TAPI \
    TCR_ADAPTER__EMULATOR__DATA_DIR="$TDIR" \
    TCR_ADAPTER__EMULATOR__TLS__MODE=self-signed \
    TCR_ADAPTER__LOG__LEVEL=warn \
    "$BIN" emulator >"$WORK/logs/emulator-tls.log" 2>&1 &
TEMU_PID=$!; PIDS+=("$TEMU_PID")
CA=$TDIR/tls/ca.pem
for _ in $(seq 1 200); do
  [[ -s $CA ]] && curl -s -o /dev/null --cacert "$CA" "https://127.0.0.1:$TREG/v2/" && break
  sleep 0.05
done
curl -s -o /dev/null --cacert "$CA" "https://127.0.0.1:$TREG/v2/" || die "the TLS emulator did not come up"
export BENCH_CA_FILE=$CA
CERTS=$WORK/tls-certs.d   # skopeo --dest-cert-dir
mkdir -p "$CERTS" && cp "$CA" "$CERTS/ca.crt"

# Namespaces: blobs per path, latency, skopeo per (path, run), mount-heavy per (path, run) and,
# for the direct and nginx paths, every "new" namespace of the second mount figure.
tls_ns=(tls-direct tls-adapter tls-nginx tlat)
for r in $(seq 1 "$RUNS"); do
  for p in direct adapter nginx; do tls_ns+=("tsk-$p-r$r" "mnt-$p-r$r"); done
  for p in direct nginx; do
    for i in $(seq 0 $((SYNC_IMAGES - 1))); do tls_ns+=("mntns-$p-r$r-$i"); done
  done
done
read -r TUSER TTOKEN < <($M setup --api "https://127.0.0.1:$TAPI" --secret-id $SID --secret-key $SKEY \
  --region $REGION --registry-id $REGID --namespaces "$(IFS=,; echo "${tls_ns[*]}")")

log "TLS: starting the adapter (https :$TA -> https :$TREG)"
serve_adapter "$WORK/logs/adapter-tls.log" \
    TCR_ADAPTER__SERVER__LISTEN=127.0.0.1:$TA \
    TCR_ADAPTER__SERVER__PUBLIC_URL=https://127.0.0.1:$TA \
    TCR_ADAPTER__SERVER__TLS__CERT_FILE="$TDIR/tls/cert.pem" \
    TCR_ADAPTER__SERVER__TLS__KEY_FILE="$TDIR/tls/key.pem" \
    TCR_ADAPTER__TCR__REGISTRY_URL=https://127.0.0.1:$TREG \
    TCR_ADAPTER__TCR__API_ENDPOINT=https://127.0.0.1:$TAPI \
    TCR_ADAPTER__TCR__CA_FILE="$CA"
TA_PID=$!; PIDS+=("$TA_PID")
for _ in $(seq 1 200); do curl -s -o /dev/null --cacert "$CA" "https://127.0.0.1:$TA/healthz" && break; sleep 0.05; done
curl -sf -o /dev/null --cacert "$CA" "https://127.0.0.1:$TA/healthz" || die "the TLS adapter did not come up"

log "TLS: starting nginx (https :$TN -> https :$TREG)"
mkdir -p "$WORK/nginx-tls/tmp"
cat >"$WORK/nginx-tls/nginx.conf" <<EOF
$(nginx_conf_head "$WORK/nginx-tls" "$WORK/logs/nginx-tls.log")
  upstream emulator_tls { server 127.0.0.1:$TREG; keepalive 64; }
  server {
    listen 127.0.0.1:$TN ssl;
    ssl_certificate $TDIR/tls/cert.pem;
    ssl_certificate_key $TDIR/tls/key.pem;
    ssl_session_cache shared:SSL:1m;
    client_max_body_size 0;
    chunked_transfer_encoding on;
    location / {
      proxy_pass https://emulator_tls;
      proxy_ssl_trusted_certificate $CA;
      proxy_ssl_verify on;
      proxy_ssl_name localhost;  # nginx checks DNS names only; the certificate also names localhost
      proxy_ssl_session_reuse on;
$(nginx_proxy_settings)
    }
  }
}
EOF
nginx -p "$WORK/nginx-tls" -c "$WORK/nginx-tls/nginx.conf" -e "$WORK/logs/nginx-tls.log" \
  >"$WORK/logs/nginx-tls.out" 2>&1 &
TN_PID=$!; PIDS+=("$TN_PID")
for _ in $(seq 1 200); do curl -s -o /dev/null --cacert "$CA" "https://127.0.0.1:$TN/v2/" && break; sleep 0.05; done

tls_args() { # path → measure.py connection arguments
  case $1 in
    direct)  echo "--base https://127.0.0.1:$TREG --realm https://127.0.0.1:$TREG --service harbor-registry --user $TUSER --password $TTOKEN" ;;
    nginx)   echo "--base https://127.0.0.1:$TN --realm https://127.0.0.1:$TN --service harbor-registry --user $TUSER --password $TTOKEN" ;;
    adapter) echo "--base https://127.0.0.1:$TA --service tcr-adapter --user $SID --password $SKEY" ;;
  esac
}
tls_cpu() {
  case $1 in
    direct)  echo "--cpu upstream=$TEMU_PID" ;;
    adapter) echo "--cpu upstream=$TEMU_PID --cpu proxy=$TA_PID" ;;
    nginx)   echo "--cpu upstream=$TEMU_PID --cpu proxy=$TN_PID" ;;
  esac
}

for r in $(seq 1 "$RUNS"); do
  log "TLS: ${BIG_MIB} MiB blob push and pull, run $r/$RUNS"
  for p in direct adapter nginx; do
    for op in push pull; do
      # shellcheck disable=SC2046
      $M blobs $(tls_args "$p") $(tls_cpu "$p") --upstream emulator-tls --path "$p" --run "$r" \
        --workdir "$WORK" --repo "tls-$p/big" --tag "tls-$p-big" --size $BIG --op $op \
        --test "$op ${BIG_MIB} MiB"
    done
  done
done

log "TLS: manifest latency"
# shellcheck disable=SC2046
read -r _ _ _ < <($M image $(tls_args direct) --repo tlat/app)
# shellcheck disable=SC2046
TTOK_DIRECT=$($M token $(tls_args direct) --scope "repository:tlat/app:pull")
# shellcheck disable=SC2046
TTOK_ADAPTER=$($M token $(tls_args adapter) --scope "repository:tlat/app:pull")
declare -A TBASE=([direct]=https://127.0.0.1:$TREG [adapter]=https://127.0.0.1:$TA [nginx]=https://127.0.0.1:$TN)
declare -A TBEARER=([direct]=$TTOK_DIRECT [adapter]=$TTOK_ADAPTER [nginx]=$TTOK_DIRECT)
for r in $(seq 1 "$RUNS"); do
  for p in direct adapter nginx; do
    $M wrk --upstream emulator-tls --path "$p" --run "$r" --duration "$WRK_SECS" --kind latency \
      --test "manifest GET" --method GET --auth "Bearer ${TBEARER[$p]}" \
      --url "${TBASE[$p]}/v2/tlat/app/manifests/v1"
  done
done

log "TLS: building $SYNC_IMAGES OCI images, and $SYNC_IMAGES sharing two base layers"
$M layouts --dir "$WORK/tls-layout" --count $SYNC_IMAGES
$M layouts --dir "$WORK/tls-shared" --count $SYNC_IMAGES --shared 2
# tls_copy <run> <test> <layout dir> <namespace prefix> [<namespace suffix>]: one skopeo figure,
# the three paths taking turns, each into <prefix>-<path>-r<run><suffix>/.
tls_copy() {
  local r=$1 pre=$4 suf=${5:-}
  $M skopeo --upstream emulator-tls --run "$r" --test "$2" \
    --dir "$3" --count $SYNC_IMAGES --workdir "$WORK" --cert-dir "$CERTS" \
    --target "direct,127.0.0.1:$TREG,$pre-direct-r$r$suf/,$TUSER,$TTOKEN" \
    --target "adapter,127.0.0.1:$TA,$pre-adapter-r$r$suf/,$SID,$SKEY" \
    --target "nginx,127.0.0.1:$TN,$pre-nginx-r$r$suf/,$TUSER,$TTOKEN"
}
for r in $(seq 1 "$RUNS"); do
  log "TLS: skopeo copy x$SYNC_IMAGES, run $r/$RUNS (the paths take turns)"
  tls_copy "$r" "skopeo copy ${SYNC_IMAGES} images" "$WORK/tls-layout" tsk
  log "TLS: mount-heavy copy x$SYNC_IMAGES into one existing namespace, run $r/$RUNS"
  tls_copy "$r" "mount-heavy copy ${SYNC_IMAGES} images, existing namespace" "$WORK/tls-shared" mnt
  log "TLS: mount-heavy copy x$SYNC_IMAGES, a new namespace each, run $r/$RUNS"
  tls_copy "$r" "mount-heavy copy ${SYNC_IMAGES} images, new namespaces" "$WORK/tls-shared" mntns "-{i}"
done
