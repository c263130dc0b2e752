#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests (CI, or a developer's machine as root): a fresh
# cluster in $SWEEP_PG_BASE (default /tmp/sweep-ci-pg), run by the non-root `postgres` OS
# user, TCP on 127.0.0.1 only, durability off. A role with a password (scram-sha-256 on
# TCP), so the tests can check the password never shows up in Slurm's job records.
#
#   eval "$(bash .ci/pg_up.sh)"     # start; prints `export SWEEP_TEST_PG_URL=...`
#   bash .ci/pg_up.sh down          # stop
#
# Progress goes to stderr; stdout carries only the export line.
set -euo pipefail
BASE=${SWEEP_PG_BASE:-/tmp/sweep-ci-pg}
PORT=${SWEEP_PG_PORT:-54329}
OS_USER=${SWEEP_PG_OS_USER:-postgres}
DATA=$BASE/data

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "installing postgresql" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2 ||
        { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2; }
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
id "$OS_USER" >/dev/null 2>&1 || useradd --system --no-create-home "$OS_USER"
as_pg() { setpriv --reuid="$OS_USER" --regid="$(id -g "$OS_USER")" --init-groups env HOME="$BASE" "$@"; }

stop() {
    if [ -f "$DATA/postmaster.pid" ]; then
        as_pg "$BIN/pg_ctl" -D "$DATA" stop -m fast >&2 || true
    fi
}
if [ "${1:-up}" = down ]; then stop; exit 0; fi

stop
rm -rf "$BASE"
install -d -o "$OS_USER" -m 0700 "$BASE" "$DATA" "$BASE/sock"
as_pg "$BIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
# Passwords on TCP, trust on the private socket (for the admin commands below).
cat > "$DATA/pg_hba.conf" <<HBA
local all all trust
host  all all 127.0.0.1/32 scram-sha-256
HBA
as_pg "$BIN/pg_ctl" -D "$DATA" -l "$BASE/server.log" -w -t 30 start \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $BASE/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >&2
PASSWORD=${SWEEP_PG_PASSWORD:-ci-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')}
as_pg "$BIN/psql" -q -v ON_ERROR_STOP=1 -h "$BASE/sock" -p "$PORT" -U postgres -d postgres >&2 <<SQL
CREATE ROLE sweep LOGIN PASSWORD '$PASSWORD';
CREATE DATABASE sweep OWNER sweep;
SQL
echo "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT, data in $DATA" >&2
echo "export SWEEP_TEST_PG_URL='postgres://sweep:$PASSWORD@127.0.0.1:$PORT/sweep'"
