#!/usr/bin/env bash
# Docker's health check: exits 0 when GET http://127.0.0.1:$ORTHANC_HTTP_PORT/azure-dicom/status
# returns 200, and 1 otherwise (Docker reserves exit code 2).
#
# It reads the same variables as entrypoint.sh. With ORTHANC_AUTHENTICATION true (the default),
# it logs in as the first user of ORTHANC_USERS_FILE. The password reaches curl on standard
# input, never on its command line, where other processes could read it.
# ORTHANC_HEALTHCHECK_PATH checks another route, such as /system for an Orthanc without the
# mirror.
set -euo pipefail

port=${ORTHANC_HTTP_PORT:-8042}
path=${ORTHANC_HEALTHCHECK_PATH:-/azure-dicom/status}
users_file=${ORTHANC_USERS_FILE:-/run/secrets/orthanc-users}
timeout_seconds=${ORTHANC_HEALTHCHECK_TIMEOUT_SECONDS:-10}
url="http://127.0.0.1:${port}${path}"

unhealthy() {
  echo "orthanc-azure-healthcheck: $*" >&2
  exit 1
}

# The entrypoint rejects values other than true, yes, 1, false, no and 0, in any case.
authentication=${ORTHANC_AUTHENTICATION:-true}
case "${authentication,,}" in
  true | yes | 1) authentication=true ;;
  *) authentication=false ;;
esac

curl_options=(--silent --show-error --fail --output /dev/null --max-time "$timeout_seconds")
if [ "$authentication" = false ]; then
  curl "${curl_options[@]}" "$url" || unhealthy "GET $url failed"
  exit 0
fi

[ -r "$users_file" ] || unhealthy "cannot read ORTHANC_USERS_FILE \"$users_file\""
credentials=""
while IFS= read -r line || [ -n "$line" ]; do
  line=${line%$'\r'}
  if [ -n "$line" ] && [ "${line:0:1}" != "#" ] && [ "${line#*:}" != "$line" ]; then
    credentials=$line
    break
  fi
done <"$users_file"
[ -n "$credentials" ] || unhealthy "ORTHANC_USERS_FILE \"$users_file\" lists no user"

# A curl configuration file quotes with "..." and escapes \ and " with a backslash.
credentials=${credentials//\\/\\\\}
credentials=${credentials//\"/\\\"}
printf 'user = "%s"\n' "$credentials" | curl --config - "${curl_options[@]}" "$url" ||
  unhealthy "GET $url failed"
