#!/usr/bin/env bash
# Builds the plugin and mirrors sample studies from one Orthanc to another on this machine.
#
# Usage: bash Resources/demo.sh [--once] [--dir DIR] [--timeout SECONDS]
#   --once       exit 0 once every instance is at the target (non-zero on timeout)
#   --dir DIR    work folder of the two Orthanc servers (default /tmp/orthanc-azure-dicom-demo)
#   --timeout S  seconds that --once waits for the mirror (default 600)
# The build folder is ./build, or $BUILD_DIR.
#
# As root on Debian 12, it first installs the packages it needs. The target is an Orthanc with
# its DICOMweb plugin, the source an Orthanc with this plugin, both on free loopback ports. Both
# Orthanc 1.10 servers listen on every interface, with remote access refused.
set -euo pipefail

repository=$(cd "$(dirname "$0")/.." && pwd)
python=/usr/bin/python3
helper="$repository/Resources/demo-data.py"
marker=.orthanc-azure-dicom-demo
directory=/tmp/orthanc-azure-dicom-demo
once=false
timeout=600

usage() {
  sed -n '2,13s/^# \{0,1\}//p' "$0"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --once) once=true ;;
    --dir)
      [ $# -ge 2 ] || { echo "error: --dir needs a folder" >&2; exit 2; }
      directory=$2
      shift
      ;;
    --timeout)
      [ $# -ge 2 ] || { echo "error: --timeout needs a number of seconds" >&2; exit 2; }
      timeout=$2
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if [ "$(id -u)" -eq 0 ]; then
  bash "$repository/Resources/install-dependencies.sh"
else
  echo "Not root: skipping Resources/install-dependencies.sh (run it as root if a step fails)."
fi

cd "$repository"
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j"$(nproc)"
plugin=$(cd "$build" && pwd)/libOrthancAzureDicom.so

# Only the target and source folders of an earlier run of this script (with its marker) are
# removed.
if [ -d "$directory" ] && [ -n "$(ls -A "$directory")" ]; then
  if [ ! -f "$directory/$marker" ]; then
    echo "error: $directory exists and was not made by this script: choose another with --dir" >&2
    exit 2
  fi
  rm -rf "$directory/target" "$directory/source"
fi
mkdir -p "$directory/target" "$directory/source"
touch "$directory/$marker"

mapfile -t ports < <("$python" "$helper" free-ports 4)
target_port=${ports[0]}
source_port=${ports[2]}
target_url="http://127.0.0.1:$target_port"
source_url="http://127.0.0.1:$source_port"

cat >"$directory/target/orthanc.json" <<EOF
{
  "Name": "demo-target",
  "StorageDirectory": "$directory/target/storage",
  "IndexDirectory": "$directory/target/storage",
  "HttpPort": $target_port,
  "DicomPort": ${ports[1]},
  "DicomServerEnabled": false,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/"}
}
EOF

cat >"$directory/source/orthanc.json" <<EOF
{
  "Name": "demo-source",
  "StorageDirectory": "$directory/source/storage",
  "IndexDirectory": "$directory/source/storage",
  "HttpPort": $source_port,
  "DicomPort": ${ports[3]},
  "DicomServerEnabled": false,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "Plugins": ["$plugin"],
  "AzureDicom": {
    "Enable": true,
    "ServiceUrl": "$target_url/dicom-web",
    "ApiVersion": "",
    "Credentials": {"Type": "None"}
  }
}
EOF

pids=()
# shellcheck disable=SC2317  # called by the EXIT trap
stop_servers() {
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

# setsid keeps the servers out of the terminal's process group, so that Ctrl-C reaches this
# script, which stops them by PID.
start_server() {
  local name=$1 url=$2
  setsid /usr/sbin/Orthanc "$directory/$name/orthanc.json" >"$directory/$name/orthanc.log" 2>&1 &
  pids+=($!)
  if ! "$python" "$helper" wait "$url"; then
    echo "error: the $name Orthanc did not start; last lines of its log:" >&2
    tail -n 20 "$directory/$name/orthanc.log" >&2
    exit 1
  fi
  echo "Started the $name Orthanc (PID $!) at $url, log $directory/$name/orthanc.log"
}

start_server target "$target_url"
start_server source "$source_url"

"$python" "$helper" upload "$source_url"
echo "Mirror status: $source_url/azure-dicom/status"
echo "Dashboard: $source_url/azure-dicom/ui/"

# The watcher runs in the background because "wait" returns as soon as a signal arrives, so
# Ctrl-C or SIGTERM stops everything at once instead of after the current foreground command.
watch_options=()
if [ "$once" = true ]; then
  watch_options=(--once --timeout "$timeout")
else
  echo "Press Ctrl-C to stop both Orthanc servers."
fi
"$python" "$helper" watch "$source_url" "$target_url" "${watch_options[@]}" &
pids=("$!" "${pids[@]}")
status=0
wait "${pids[0]}" || status=$?
exit "$status"
