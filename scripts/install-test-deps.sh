#!/usr/bin/env bash
# Installs everything the test suite needs on a bare Debian machine, then checks each piece is
# really there. Fails loudly: a missing component is an error, never a skipped test.
set -euo pipefail

APT_PACKAGES=(skopeo docker-registry nginx-light wrk hyperfine prometheus redis-server)
PIP_PACKAGES=(tencentcloud-sdk-python-tcr python-dxf oras pytest schemathesis helm-python-sdk pyyaml)

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing_apt=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing_apt+=("$p")
done
if [ ${#missing_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing_apt[*]}"
  $SUDO apt-get update -qq
  # Never start the packaged services (docker-registry, nginx) on install.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -qq --no-install-recommends "${missing_apt[@]}"
fi

PYTHON="${PYTHON:-python3}"
echo "installing PyPI packages: ${PIP_PACKAGES[*]}"
"$PYTHON" -m pip install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"

fail=0
for cmd in skopeo docker-registry nginx wrk hyperfine prometheus promtool redis-server schemathesis cargo "$PYTHON"; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "MISSING: command $cmd" >&2; fail=1
  fi
done
"$PYTHON" - <<'PY' || fail=1
import importlib, sys
for mod in ["tencentcloud.tcr.v20190924.tcr_client", "dxf", "oras.client", "pytest", "schemathesis", "helm_python", "yaml"]:
    try:
        importlib.import_module(mod)
    except Exception as e:
        print(f"MISSING: python module {mod}: {e}", file=sys.stderr)
        sys.exit(1)
PY
if [ "$fail" != 0 ]; then
  echo "test dependencies are incomplete" >&2
  exit 1
fi
echo "test dependencies: all present"
