#!/usr/bin/env bash
# The README's test command: install what the tests need, then run every test.
#   scripts/test.sh            # install + fmt/clippy + all tests + container check + static binary
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== cargo test"
mkdir -p target
test_rc=0
cargo test --no-fail-fast --all-targets 2>&1 | tee target/test-output.log || test_rc=$?
# The OCI conformance port and the Harbor replays once more with pipelined uploads.
echo "== cargo test with wan.pipeline = true (conformance, Harbor replays and flows)"
TCR_TEST_WAN_PIPELINE=1 cargo test --no-fail-fast --test conformance --test harbor_provider \
  --test adapter_proxy 2>&1 | tee -a target/test-output.log || test_rc=$?
# The WAN suites, the conformance port and the Harbor replays once more with the WAN state on a
# real Redis ([state] redis_url), with and without pipelined uploads: a shared store changes
# nothing a client sees. The server is ours alone (loopback, a free port), stopped by its PID.
echo "== cargo test with [state] redis_url (WAN suites, conformance, Harbor replays)"
redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break; sleep 0.1; done
(echo > "/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null || { echo "redis-server did not start" >&2; exit 1; }
# The WAN suites choose their own mode (wan_pipeline pipelines; the others test the default path);
# conformance and the Harbor replays run both ways.
TCR_TEST_STATE_REDIS="redis://127.0.0.1:$redis_port/0" \
  cargo test --no-fail-fast --test wan_dedup --test wan_ahead --test wan_harbor --test wan_pipeline \
  --test conformance --test harbor_provider 2>&1 | tee -a target/test-output.log || test_rc=$?
TCR_TEST_STATE_REDIS="redis://127.0.0.1:$redis_port/0" TCR_TEST_WAN_PIPELINE=1 \
  cargo test --no-fail-fast --test conformance --test harbor_provider 2>&1 \
  | tee -a target/test-output.log || test_rc=$?
kill "$redis_pid" 2>/dev/null || true
# The image from the real Dockerfile, the real compose stack, and the static binary
# (self-contained: each script also runs alone). A failure fails the run, after the tally.
echo "== container check"
container_rc=0
scripts/container-check.sh || container_rc=$?
scripts/static-binary.sh || container_rc=$(( container_rc | $? ))
if [ "$container_rc" != 0 ]; then echo "container check: FAILED (see above)"; else echo "container check: passed"; fi
# One closing line with the totals over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' \
  target/test-output.log
[ "$test_rc" = 0 ] && [ "$container_rc" = 0 ]
