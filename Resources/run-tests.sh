#!/usr/bin/env bash
# Installs what the build and the tests need (Debian 12, as root), builds, and runs every test:
# the unit tests (also built with AddressSanitizer and UndefinedBehaviorSanitizer), a short run of
# each fuzzer, the integration tests, which start real Orthanc servers on loopback, and the
# browser tests of Orthanc Explorer and the dashboard.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
  bash Resources/install-dependencies.sh
fi

build=$(realpath -m "${BUILD_DIR:-build}")

# The unit tests with the sanitizers, and the fuzzers (libFuzzer needs clang), in trees of their
# own; the main tree's CTest runs them.
cmake -S . -B "$build-sanitizers" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAZURE_DICOM_SANITIZERS=ON
cmake --build "$build-sanitizers" -j"$(nproc)" --target UnitTests
CC=clang CXX=clang++ cmake -S . -B "$build-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DAZURE_DICOM_FUZZERS=ON -DBUILD_TESTING=OFF
cmake --build "$build-fuzz" -j"$(nproc)" --target FuzzStowResponse FuzzConfiguration \
  FuzzRequestBodies FuzzMultipartWriter FuzzDicomPrefixReader

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DAZURE_DICOM_SANITIZED_UNIT_TESTS="$build-sanitizers/UnitTests/UnitTests" \
  -DAZURE_DICOM_FUZZ_DIR="$build-fuzz/UnitTests/Fuzz"
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
