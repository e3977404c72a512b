#!/usr/bin/env bash
# Benchmarks the plugin against Orthanc's DICOMweb STOW job, Lua auto-routing and curl, prints
# the tables and writes docs/benchmarks.md.
#
# Usage: bash Resources/bench.sh [--commit REV] [--skip-install] [OPTION...]
#   --commit REV          build the plugin from commit REV (git archive) instead of the
#                         working tree
#   --skip-install        do not run Resources/install-dependencies.sh
#   --quick               smaller data sets and one repeat, for a trial run (about 15 minutes)
#   --work DIR            data sets, archives and runs (default /tmp/orthanc-azure-dicom-bench)
#   --output FILE         the Markdown page (default docs/benchmarks.md)
#   --max-run-seconds S   time limit of one transfer (default 300, 60 with --quick)
#   --only SECTION...     transfers, ingestion, latency, backlog and/or nodes (default:
#                         all)
#   --datasets D...       transfer only these data sets: 512k, 2k, multiframe
#   --targets T...        transfer only to these targets: orthanc, sink
#   --methods M...        only these transfer methods: plugin-ingest, plugin-backfill,
#                         stow-job, lua-stable, lua-instance, curl
#   --runs-on-disk        keep the servers' storage in the work folder instead of memory
#   --render FILE         measure nothing: write the page again from the results.json that
#                         an earlier run left in its work folder
# A full run, nodes included, took 42 to 52 minutes on 2 CPUs with the runs in memory, and
# used about 6 GB in the work folder.
#
# As root on Debian 12, it first installs the packages it needs. It builds the plugin in
# build-bench/ and the null sink (Resources/Bench/NullSink.cpp) with g++, then runs
# Resources/Bench/bench.py in a new network namespace where only loopback exists, because
# Orthanc 1.10 listens on every interface, and in a new mount namespace, where it mounts the
# in-memory folder of the servers' storage.
set -euo pipefail

repository=$(cd "$(dirname "$0")/.." && pwd)
python=/usr/bin/python3
commit=""
install=true
options=()

usage() {
  sed -n '2,30s/^# \{0,1\}//p' "$0"
}

while [ $# -gt 0 ]; do
  case "$1" in
    --commit)
      [ $# -ge 2 ] || { echo "error: --commit needs a git revision" >&2; exit 2; }
      commit=$2
      shift
      ;;
    --skip-install) install=false ;;
    -h | --help) usage; exit 0 ;;
    *) options+=("$1") ;;
  esac
  shift
done

if [ "$install" = true ]; then
  if [ "$(id -u)" -eq 0 ]; then
    bash "$repository/Resources/install-dependencies.sh"
    # GNU time reports the peak RSS of each curl process of the upper-bound runs.
    if ! dpkg-query -W -f='${Status}' time 2>/dev/null | grep -q "install ok installed"; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends time
    fi
  else
    echo "Not root: skipping Resources/install-dependencies.sh (run it as root if a step fails)."
  fi
fi

cd "$repository"
build="$repository/build-bench"
mkdir -p "$build"

if [ -n "$commit" ]; then
  revision=$(git rev-parse --verify "$commit^{commit}")
  # One folder per commit: git archive gives every file the commit's time, which can be older
  # than the objects of another commit's build, so make would keep stale objects.
  source="$build/commit-$revision/source"
  plugin_build="$build/commit-$revision/build"
  if [ ! -d "$source" ]; then
    rm -rf "$source.partial"
    mkdir -p "$source.partial"
    git archive "$revision" | tar -x -C "$source.partial"
    mv "$source.partial" "$source"
  fi
  described="$revision"
else
  source="$repository"
  plugin_build="$build/worktree"
  described=$(git rev-parse HEAD)
  changes=$(git status --porcelain -- Plugin CMakeLists.txt Resources/CMake Resources/Embedded)
  if [ -n "$changes" ]; then
    described="$described, with uncommitted changes to the plugin's sources"
  fi
fi

cmake -S "$source" -B "$plugin_build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF
cmake --build "$plugin_build" -j"$(nproc)"
plugin="$plugin_build/libOrthancAzureDicom.so"

sink="$build/null-sink"
g++ -std=c++17 -O2 -Wall -Wextra -Wpedantic -pthread -I "$repository/Plugin" \
  "$repository/Resources/Bench/NullSink.cpp" "$repository/Plugin/Common/DicomPrefixReader.cpp" \
  -o "$sink"

if [ "$(id -u)" -eq 0 ]; then
  isolate=(unshare --net --mount)
else
  isolate=(unshare --user --map-root-user --net --mount)
fi

# Options given later on the command line replace these defaults. The single quotes are
# deliberate: $0 and $@ are expanded by the inner sh.
# shellcheck disable=SC2016
"${isolate[@]}" sh -c 'ip link set lo up && exec "$0" "$@"' \
  "$python" "$repository/Resources/Bench/bench.py" \
  --plugin "$plugin" --sink "$sink" --commit "$described" --own-mount-namespace \
  --output "$repository/docs/benchmarks.md" "${options[@]}"
