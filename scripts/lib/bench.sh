# Sourced by scripts/bench.sh (and so scripts/bench-tls.sh) and scripts/bench-wan.sh (needs BIN):
# the emulator's demo account, `tcr-adapter serve` started for it, processes stopped by PID.
SID=AKIDtcradapterDEMO0000000000000000
SKEY=tcradapterDEMOsecretKEY000000000
REGION=ap-guangzhou
REGID=tcr-emulator

# serve_adapter <log> [VAR=value...]: `$BIN serve` in the background (its PID is then $!) with the
# demo account's instance and API keys, fresh signing and sealing keys and log level warn
# (BENCH_ADAPTER_LOG, e.g. "warn,tcr_adapter::upstream=debug", for a trace of its calls), plus
# the given settings (which win over those).
serve_adapter() {
  local log=$1; shift
  env TCR_ADAPTER__TCR__REGISTRY_ID=$REGID TCR_ADAPTER__TCR__REGION=$REGION \
      TCR_ADAPTER__TCR__SECRET_ID=$SID TCR_ADAPTER__TCR__SECRET_KEY=$SKEY \
      TCR_ADAPTER__AUTH__SIGNING_KEY="$(openssl rand -base64 32)" \
      TCR_ADAPTER__AUTH__SEALING_KEY="$(openssl rand -base64 32)" \
      TCR_ADAPTER__LOG__LEVEL="${BENCH_ADAPTER_LOG:-warn}" \
      "$@" "$BIN" serve >"$log" 2>&1 &
}

# stop_pids <pid>...: SIGTERM, up to 5 s for a graceful exit (it may wait for idle keep-alive
# connections), then SIGKILL; every one reaped.
stop_pids() {
  local pid alive
  for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    (( alive )) || break
    sleep 0.1
  done
  for pid in "$@"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null; done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

# nginx_conf_head <prefix dir> <error log>: the start of an nginx.conf for `nginx -p <prefix dir>`,
# up to and inside `http {` (no access log, temporary files under <prefix dir>/tmp); the caller
# adds its upstreams and servers and closes the block.
nginx_conf_head() {
  cat <<EOF
worker_processes auto;
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $2 warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1/tmp/body;
  proxy_temp_path $1/tmp/proxy;
EOF
}

# nginx_proxy_settings: the proxy directives of every measured nginx location: HTTP/1.1 with
# keep-alive to the upstream, the client's Host and scheme, nothing buffered, long timeouts.
nginx_proxy_settings() {
  cat <<'EOF'
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 900s;
      proxy_send_timeout 900s;
EOF
}
