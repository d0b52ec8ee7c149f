#!/usr/bin/env bash
# The README's test command: install what the tests need, then run every test.
#   scripts/test.sh            # install + fmt/clippy + all tests
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== cargo test"
mkdir -p target
cargo test --no-fail-fast --all-targets 2>&1 | tee target/test-output.log
# One closing line with the totals over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' \
  target/test-output.log
