# Sourced by scripts/bench.sh (and so scripts/bench-tls.sh) and scripts/bench-wan.sh (needs BIN):
# the emulator's demo account, `tcr-adapter serve` started for it, processes stopped by PID.
SID=AKIDtcradapterDEMO0000000000000000
SKEY=tcradapterDEMOsecretKEY000000000
REGION=ap-guangzhou
REGID=tcr-emulator

# serve_adapter <log> [VAR=value...]: `$BIN serve` in the background (its PID is then $!) with the
# demo account's instance and API keys, fresh signing and sealing keys and log level warn, plus
# the given settings (which win over those).
serve_adapter() {
  local log=$1; shift
  env TCR_ADAPTER__TCR__REGISTRY_ID=$REGID TCR_ADAPTER__TCR__REGION=$REGION \
      TCR_ADAPTER__TCR__SECRET_ID=$SID TCR_ADAPTER__TCR__SECRET_KEY=$SKEY \
      TCR_ADAPTER__AUTH__SIGNING_KEY="$(openssl rand -base64 32)" \
      TCR_ADAPTER__AUTH__SEALING_KEY="$(openssl rand -base64 32)" \
      TCR_ADAPTER__LOG__LEVEL=warn \
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
