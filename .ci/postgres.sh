#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL cluster: .ci/postgres.sh make test
#
# Installs PostgreSQL from the distribution's packages if it is missing, creates a cluster
# in a temporary folder (initdb, trust authentication, listening only on a unix socket in
# that folder and on 127.0.0.1; fsync off unless QANALYTICS_PG_SERVER_OPTS says otherwise),
# exports QANALYTICS_TEST_PG with its URL, runs the command,
# then stops the cluster and deletes the folder, whatever the command's exit status.
set -euo pipefail

find_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/initdb" ]; then echo "$dir"; fi
    done | sort -V | tail -n 1
}

bindir="$(find_bin)"
if [ -z "$bindir" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "PostgreSQL is not installed and installing it needs root" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bindir="$(find_bin)"
fi

# As root (CI), the cluster runs as the postgres user: the server refuses to run as root.
as_owner=()
if [ "$(id -u)" = 0 ]; then
    as_owner=(runuser -u postgres --)
fi

tmp="$(mktemp -d)"
chmod 755 "$tmp"
if [ "$(id -u)" = 0 ]; then chown postgres "$tmp"; fi
port="${QANALYTICS_PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"

cleanup() {
    "${as_owner[@]}" "$bindir/pg_ctl" -D "$tmp/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$tmp"
}
trap cleanup EXIT

"${as_owner[@]}" "$bindir/initdb" -D "$tmp/data" -U postgres --auth=trust -E UTF8 \
    --locale=C.UTF-8 >/dev/null
"${as_owner[@]}" "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w start -o \
    "-c listen_addresses=127.0.0.1 -p $port -k $tmp -c max_connections=200 ${QANALYTICS_PG_SERVER_OPTS--c fsync=off}" \
    >/dev/null
"$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres qanalytics_test

export QANALYTICS_TEST_PG="postgresql://postgres@127.0.0.1:$port/qanalytics_test"
echo "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') at $QANALYTICS_TEST_PG" >&2
set +e
"$@"
status=$?
set -e
exit $status
