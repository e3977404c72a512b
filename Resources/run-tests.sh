#!/usr/bin/env bash
# Installs what the build and the tests need (Debian 12, as root), builds, and runs every test:
# the unit tests, the integration tests, which start real Orthanc servers on loopback, and the
# browser tests of Orthanc Explorer and the dashboard.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
  bash Resources/install-dependencies.sh
fi

build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$build" -j"$(nproc)"

# The browser tests drive Chromium with playwright-core. npm needs the registry, so it runs here,
# before the network namespace.
(cd UnitTests/Browser && npm ci --no-audit --no-fund)

# Orthanc 1.10 has no bind-address setting and listens on every interface, so the tests run in
# a private network namespace where only loopback exists.
if [ "$(id -u)" -eq 0 ]; then
  isolate=(unshare --net)
else
  isolate=(unshare --user --map-root-user --net)
fi
"${isolate[@]}" bash -c "ip link set lo up && cd '$build' && ctest --output-on-failure -j2 $*"
