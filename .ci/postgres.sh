#!/usr/bin/env bash
# Install (Debian packages) and start a PostgreSQL server on loopback for the tests, then export PG_TEST_URL.
# CI runs as root and initdb refuses root, so the cluster is managed with Debian's pg_ctlcluster tools.
set -euo pipefail

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$version main"; then
  pg_createcluster "$version" main >/dev/null
fi
log="/var/log/postgresql/postgresql-$version-main.log"
if ! pg_ctlcluster "$version" main start 2>/dev/null && ! pg_ctlcluster "$version" main status >/dev/null; then
  echo "PostgreSQL $version/main did not start; the end of $log:" >&2
  tail -n 20 "$log" >&2 || true
  exit 1
fi
port=$(pg_lsclusters -h | awk -v v="$version" '$1==v && $2=="main" {print $3}')
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 1
done
if ! pg_isready -q -h 127.0.0.1 -p "$port"; then
  echo "PostgreSQL $version/main is not ready on 127.0.0.1:$port after 30 s; see $log" >&2
  exit 1
fi
su postgres -c "psql -q -p $port -v ON_ERROR_STOP=1" <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'gateway') THEN
    CREATE ROLE gateway LOGIN CREATEDB PASSWORD 'gateway';
  ELSE
    ALTER ROLE gateway LOGIN CREATEDB PASSWORD 'gateway';
  END IF;
END $$;
GRANT pg_signal_backend TO gateway;
SQL
if [ "${CI:-}" = "true" ]; then
  # A throwaway CI server: the tests kill gateway processes, never this server, so flushing each commit to disk
  # only costs time. Never do this on a server that keeps data.
  su postgres -c "psql -q -o /dev/null -p $port -v ON_ERROR_STOP=1" <<'SQL'
ALTER SYSTEM SET fsync = off;
ALTER SYSTEM SET synchronous_commit = off;
ALTER SYSTEM SET full_page_writes = off;
SELECT pg_reload_conf();
SQL
fi
export PG_TEST_URL="postgresql+asyncpg://gateway:gateway@127.0.0.1:${port}/postgres"
echo "PostgreSQL $version listening on 127.0.0.1:$port (PG_TEST_URL set)"
