#!/usr/bin/env bash
# Installs, from Debian 12's packages, what building the plugin and running its tests need.
# Run as root. Packages already installed are left as they are.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ca-certificates curl
  orthanc orthanc-dev orthanc-dicomweb
  libjsoncpp-dev libcurl4-openssl-dev libssl-dev libsqlite3-dev
  libgtest-dev libgmock-dev
  python3 python3-pydicom python3-requests python3-yaml dcmtk openssl shellcheck
  iproute2 util-linux
)

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
  # Debian's orthanc package starts a system service on install. The plugin's scripts start
  # their own Orthanc processes, so the service is stopped again if it was started here.
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet orthanc 2>/dev/null; then
    systemctl stop orthanc || true
  fi
fi
