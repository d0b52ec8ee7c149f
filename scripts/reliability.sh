#!/usr/bin/env bash
# Runs the fault suite (tests/faults) and the property tests, recording what each fault injected,
# what the client saw and what was verified, and renders RELIABILITY.md from it.
#   scripts/reliability.sh            # needs what scripts/install-test-deps.sh installs
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
log="$PWD/target/reliability.jsonl"
rm -f "$log"
TCR_RELIABILITY_LOG="$log" cargo test --test faults -- --test-threads 2 2>&1 | tee target/reliability-tests.log
cargo test --test properties 2>&1 | tee -a target/reliability-tests.log
python3 bench/reliability_report.py "$log" target/reliability-tests.log > RELIABILITY.md
echo "RELIABILITY.md written"
