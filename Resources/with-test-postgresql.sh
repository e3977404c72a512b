#!/usr/bin/env bash
# Runs a command with a throw-away PostgreSQL server, for the unit tests of the PostgreSQL outbox:
#
#   Resources/with-test-postgresql.sh build/UnitTests/UnitTests --gtest_filter='*PostgreSql*'
#
# The server (Debian's postgresql package, /usr/lib/postgresql/15/bin) runs in a temporary folder,
# listens on 127.0.0.1 only, on a free port, with its Unix socket in that folder. The command gets
# its URL in AZURE_DICOM_TEST_POSTGRESQL. The server is stopped by its PID when the command ends,
# and the script exits with the command's status. initdb rejects root, so as root the server runs
# as the postgres system user (runuser).
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 COMMAND [ARGUMENT...]" >&2
  exit 2
fi

bin=${POSTGRESQL_BIN:-/usr/lib/postgresql/15/bin}
if [ ! -x "$bin/initdb" ]; then
  echo "$bin/initdb not found: install Debian's postgresql package" \
    "(Resources/install-dependencies.sh) or set POSTGRESQL_BIN" >&2
  exit 2
fi

# Resources/run-tests.sh runs the tests of a user other than root in a user namespace that maps
# that user to root. There initdb rejects root, and runuser cannot switch to the postgres user.
if [ "$(id -u)" -eq 0 ] && [ "$(tr -s ' \t' ' ' < /proc/self/uid_map | sed 's/^ //')" != "0 0 4294967295" ]; then
  echo "PostgreSQL cannot start in a user namespace that maps this user to root: run the" \
    "tests as root, or run this script as a user other than root outside the namespace" >&2
  exit 2
fi

folder=$(mktemp -d "${TMPDIR:-/tmp}/azure-dicom-postgresql-XXXXXX")
server_pid=""

as_server_user() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# shellcheck disable=SC2317  # called by the EXIT trap
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    # SIGINT is PostgreSQL's fast shutdown: it ends the sessions and stops at once.
    kill -INT "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  rm -rf "$folder"
}
trap stop_server EXIT

if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$folder"
fi

user=azure_dicom
database=azure_dicom_test
password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

printf '%s\n' "$password" > "$folder/password"
if [ "$(id -u)" -eq 0 ]; then
  chown postgres: "$folder/password"
fi

as_server_user "$bin/initdb" --pgdata="$folder/data" --username="$user" \
  --pwfile="$folder/password" --auth=scram-sha-256 --no-sync --encoding=UTF8 --locale=C.UTF-8 \
  > "$folder/initdb.log" 2>&1 || { cat "$folder/initdb.log" >&2; exit 1; }

as_server_user "$bin/pg_ctl" --pgdata="$folder/data" --log="$folder/server.log" --wait \
  --options="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$folder -c fsync=off" \
  start > /dev/null || { cat "$folder/server.log" >&2; exit 1; }
server_pid=$(head -n 1 "$folder/data/postmaster.pid")

PGPASSWORD=$password as_server_user "$bin/psql" --host="$folder" --port="$port" --username="$user" \
  --dbname=postgres --quiet --command="CREATE DATABASE $database" > /dev/null

export AZURE_DICOM_TEST_POSTGRESQL="postgresql://$user:$password@127.0.0.1:$port/$database"
status=0
"$@" || status=$?
exit "$status"
