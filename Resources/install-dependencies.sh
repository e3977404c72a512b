#!/usr/bin/env bash
# Installs, from Debian 12's packages, what building the plugin and running its tests need.
# Run as root. Packages already installed are left as they are.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ca-certificates curl
  orthanc orthanc-dev orthanc-dicomweb
  libjsoncpp-dev libcurl4-openssl-dev libssl-dev libsqlite3-dev
  libgtest-dev libgmock-dev clang libclang-rt-14-dev
  python3 python3-pydicom python3-requests python3-yaml dcmtk openssl shellcheck
  iproute2 util-linux
  # The test and the benchmark of several Orthanc nodes start their own PostgreSQL server.
  postgresql orthanc-postgresql libpq-dev
  chromium chromium-driver
)

# The browser tests need Node.js and npm. An installed Node.js is kept, because Debian 12's
# nodejs is version 18 and playwright-core declares Node.js 20 or newer.
# NOTE: where no Node.js is installed, this installs Debian's 18, older than that minimum.
if ! command -v node >/dev/null 2>&1; then
  packages+=(nodejs)
fi
if ! command -v npm >/dev/null 2>&1; then
  packages+=(npm)
fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "Installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # Debian's orthanc and postgresql packages start system services on install (PostgreSQL's
  # cluster on port 5432). The plugin's scripts start their own Orthanc and PostgreSQL
  # processes, so these services are stopped again if they were started here.
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  for service in orthanc postgresql; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null
    then
      systemctl stop "$service" || true
    fi
  done
fi
