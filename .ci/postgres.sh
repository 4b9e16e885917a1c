#!/usr/bin/env bash
# A throwaway PostgreSQL server for the test suite, on a loopback port, in a temporary directory.
#
#   .ci/postgres.sh start          start a fresh cluster; prints the SQLAlchemy URL on stdout
#   .ci/postgres.sh url            print the URL of the running cluster (exit 1 if none)
#   .ci/postgres.sh stop           stop it and delete its directory (no error if none runs)
#   .ci/postgres.sh run CMD ARGS   start a private one, run CMD with FHIR_TEST_DATABASE_URL set,
#                                  stop it (exits with CMD's status)
#
# The cluster is for tests ONLY: it runs with fsync, synchronous_commit and full_page_writes off.
# As root it runs as the `postgres` user (root may not run postgres). It needs the PostgreSQL
# server binaries (Debian: apt-get install postgresql); .ci/run installs them.
#
# Environment: FHIR_CI_PG_DIR (state directory, default /tmp/fhir-ci-postgres-$UID),
# FHIR_CI_PG_PORT (port; default 55432 if free, else any free port), PG_BINDIR (where
# initdb and pg_ctl are; default the newest /usr/lib/postgresql/*/bin, else $PATH).
set -euo pipefail

STATE_DIR="${FHIR_CI_PG_DIR:-${TMPDIR:-/tmp}/fhir-ci-postgres-$(id -u)}"
DB_NAME=fhir
DB_USER=fhir
DB_PASSWORD=fhir

log() { echo "postgres.sh: $*" >&2; }
die() { log "$*"; exit 1; }

find_bindir() {
    if [[ -n "${PG_BINDIR:-}" ]]; then
        [[ -x "$PG_BINDIR/initdb" ]] || die "PG_BINDIR=$PG_BINDIR has no initdb"
        echo "$PG_BINDIR"
        return
    fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
        echo "$dir"
        return
    fi
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return
    fi
    die "PostgreSQL server binaries not found (Debian: apt-get install postgresql)"
}

# Run a command as the cluster's owner: `postgres` when we are root, ourselves otherwise.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        (cd / && runuser -u postgres -- env LC_ALL=C LANG=C "$@")
    else
        (cd / && env LC_ALL=C LANG=C "$@")
    fi
}

port_is_free() {
    python3 - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

free_port() {
    if [[ -n "${FHIR_CI_PG_PORT:-}" ]]; then
        echo "$FHIR_CI_PG_PORT"
    elif port_is_free 55432; then
        echo 55432
    else
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
    fi
}

is_running() {
    [[ -f "$STATE_DIR/url" && -d "$STATE_DIR/data" ]] || return 1
    as_owner "$(cat "$STATE_DIR/bindir")/pg_ctl" -D "$STATE_DIR/data" status >/dev/null 2>&1
}

cmd_url() {
    is_running || die "no throwaway PostgreSQL is running (state dir $STATE_DIR)"
    cat "$STATE_DIR/url"
}

cmd_stop() {
    [[ -e "$STATE_DIR" ]] || return 0
    if [[ ! -f "$STATE_DIR/bindir" && -n "$(ls -A "$STATE_DIR" 2>/dev/null)" ]]; then
        die "$STATE_DIR exists but is not a throwaway cluster made by this script: not touching it"
    fi
    if [[ -d "$STATE_DIR/data" && -f "$STATE_DIR/bindir" ]]; then
        as_owner "$(cat "$STATE_DIR/bindir")/pg_ctl" -D "$STATE_DIR/data" -m immediate -w stop \
            >/dev/null 2>&1 || true
    fi
    rm -rf "$STATE_DIR"
}

cmd_start() {
    local bindir port url
    bindir=$(find_bindir)
    if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        die "running as root needs a 'postgres' user to own the cluster (apt-get install postgresql)"
    fi
    cmd_stop  # a fresh cluster every time: never reuse a half-dead one
    mkdir -p "$STATE_DIR/sock"
    echo "$bindir" >"$STATE_DIR/bindir"
    if [[ $(id -u) -eq 0 ]]; then
        chown -R postgres: "$STATE_DIR"
    fi
    chmod 700 "$STATE_DIR"

    log "initdb with $bindir ($("$bindir/postgres" --version))"
    if ! as_owner "$bindir/initdb" -D "$STATE_DIR/data" -U postgres -E UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 >"$STATE_DIR/initdb.log" 2>&1; then
        cat "$STATE_DIR/initdb.log" >&2
        die "initdb failed"
    fi

    port=$(free_port)
    log "starting on 127.0.0.1:$port"
    if ! as_owner "$bindir/pg_ctl" -D "$STATE_DIR/data" -l "$STATE_DIR/server.log" -w -t 60 \
        -o "-p $port -k $STATE_DIR/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null; then
        cat "$STATE_DIR/server.log" >&2 || true
        die "pg_ctl start failed"
    fi

    local psql=(as_owner "$bindir/psql" -X -q -v ON_ERROR_STOP=1 -h "$STATE_DIR/sock" -p "$port" -U postgres)
    "${psql[@]}" -d postgres -c "CREATE ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASSWORD'" >/dev/null
    "${psql[@]}" -d postgres -c "CREATE DATABASE $DB_NAME OWNER $DB_USER" >/dev/null

    url="postgresql+psycopg://$DB_USER:$DB_PASSWORD@127.0.0.1:$port/$DB_NAME"
    echo "$url" >"$STATE_DIR/url"
    echo "$port" >"$STATE_DIR/port"
    log "ready: $url"
    echo "$url"
}

cmd_run() {
    [[ $# -gt 0 ]] || die "usage: $0 run CMD [ARGS...]"
    local url rc=0
    if [[ -z "${FHIR_CI_PG_DIR:-}" ]]; then
        # A private directory, so that this never touches a cluster started with `start`.
        STATE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/fhir-ci-postgres-run.XXXXXX")
        touch "$STATE_DIR/bindir"
    fi
    url=$(cmd_start)
    trap cmd_stop EXIT
    trap 'exit 130' INT TERM
    FHIR_TEST_DATABASE_URL="$url" "$@" || rc=$?
    return "$rc"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    url) cmd_url ;;
    run) shift; cmd_run "$@" ;;
    *) echo "usage: $0 start|stop|url|run CMD [ARGS...]" >&2; exit 2 ;;
esac
