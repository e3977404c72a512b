#!/usr/bin/env bash
# The demo profile's one-shot client: waits for both Orthanc servers, stores the pydicom sample
# files and generated studies in the mirror, and prints the counts until every instance is at
# the target. It runs in the mirror's network namespace, so both servers are on 127.0.0.1.
set -euo pipefail

helper=${DEMO_HELPER:-/opt/orthanc-azure-dicom/Resources/demo-data.py}
users_file=${ORTHANC_USERS_FILE:-/run/secrets/orthanc-users}
mirror_port=${DEMO_MIRROR_PORT:-8042}
target_url=${DEMO_TARGET_URL:-http://127.0.0.1:8043}
studies=${DEMO_STUDIES:-3}
timeout_seconds=${DEMO_TIMEOUT_SECONDS:-600}

credentials=$(grep -v -e '^#' -e '^$' "$users_file" | head -n 1)
[ -n "$credentials" ] || { echo "error: $users_file lists no user" >&2; exit 1; }

# The helper takes a URL, and requests sends the URL's user and password as basic
# authentication. Both are percent-encoded, and reach Python on standard input.
encoded=$(python3 -c 'import sys, urllib.parse
user, _, password = sys.stdin.read().rstrip("\n").partition(":")
print(urllib.parse.quote(user, safe="") + ":" + urllib.parse.quote(password, safe=""))' \
  <<<"$credentials")
mirror_url="http://$encoded@127.0.0.1:$mirror_port"

python3 "$helper" wait "$mirror_url"
python3 "$helper" wait "$target_url"
python3 "$helper" upload "$mirror_url" --studies "$studies"
exec python3 "$helper" watch "$mirror_url" "$target_url" --once --timeout "$timeout_seconds"
