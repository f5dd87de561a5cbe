#!/usr/bin/env bash
# The Docker stack's Cassandra set-up (compose service cassandra-init), once every node answers:
# what Cassandra.after_ready does on the local runtime (cdcpipe/runtime/services/cassandra.py),
# in the same order, with the same roles and grants (tests/test_runtime_parity.py holds the two
# together; a stack test runs this script against the local runtime's Cassandra):
#   1. take over: log in as the admin role (cdcpipe); on a new node, where only the default
#      superuser cassandra/cassandra exists, log in as that, replicate (2) and create the admin
#      role; then drop the default superuser, whose password everyone knows;
#   2. on a cluster (CASSANDRA_REPLICAS > 1), system_auth, system_distributed, system_traces and
#      cdc get a replica on every node, system_auth before any role is written (a role kept on
#      one node would refuse every login once that node is lost);
#   3. sql/cassandra/*.cql, in order;
#   4. the job's role (SELECT, MODIFY, ALTER on keyspace cdc) and the readers' (SELECT).
# Idempotent: it runs on every `docker compose up`, and re-applies the passwords of .env.
# Passwords reach cqlsh in files only this user can read (a credentials file, a CQL file),
# never on a command line, where `ps` would show them.
#
#   cassandra-init.sh HOST [PORT]
#   environment: CASSANDRA_ADMIN_PASSWORD, CASSANDRA_JOB_PASSWORD, CASSANDRA_READER_PASSWORD
#   (required); CASSANDRA_REPLICAS (default 1), CASSANDRA_SQL (default /sql/cassandra),
#   CASSANDRA_ADMIN_ROLE (default cdcpipe), CQLSH (default cqlsh), CASSANDRA_LOGIN_WAIT
#   (seconds to keep trying a login, default 180: the default superuser appears about 10 s
#   after a new node opens CQL)
set -euo pipefail
umask 077

host=${1:?usage: cassandra-init.sh HOST [PORT]}
port=${2:-9042}
admin_role=${CASSANDRA_ADMIN_ROLE:-cdcpipe}
replicas=${CASSANDRA_REPLICAS:-1}
sql_dir=${CASSANDRA_SQL:-/sql/cassandra}
cqlsh=${CQLSH:-cqlsh}
wait_s=${CASSANDRA_LOGIN_WAIT:-180}
: "${CASSANDRA_ADMIN_PASSWORD:?not set}" "${CASSANDRA_JOB_PASSWORD:?not set}" "${CASSANDRA_READER_PASSWORD:?not set}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

credentials() { # ROLE PASSWORD FILE: cqlsh's credentials file (printf is a builtin: no process, no argv)
  printf '[plain_text_auth]\nusername = %s\npassword = %s\n' "$1" "$2" >"$3"
}
quoted() { # a CQL string literal
  printf "'%s'" "${1//\'/\'\'}"
}
cql() { # CREDENTIALS STATEMENT...: each statement through a file, so no value reaches argv
  local login=$1
  shift
  printf '%s\n' "$@" >"$work/statements.cql"
  "$cqlsh" --credentials "$login" --request-timeout=60 "$host" "$port" -f "$work/statements.cql"
}
answers() { # CREDENTIALS: does Cassandra accept this login? (cqlsh's answer kept for the message)
  "$cqlsh" --credentials "$1" --request-timeout=10 "$host" "$port" -e "SELECT release_version FROM system.local" \
    >/dev/null 2>"$work/answer"
}
replication() { # Cassandra._replicate's statements, in its order (none on one node)
  [ "$replicas" -gt 1 ] || return 0
  local r="{'class': 'NetworkTopologyStrategy', 'datacenter1': $replicas}"
  printf '%s\n' "ALTER KEYSPACE system_auth WITH replication = $r;" \
    "ALTER KEYSPACE system_distributed WITH replication = $r;" \
    "ALTER KEYSPACE system_traces WITH replication = $r;" \
    "CREATE KEYSPACE IF NOT EXISTS cdc WITH replication = $r;" \
    "ALTER KEYSPACE cdc WITH replication = $r;"
}

credentials "$admin_role" "$CASSANDRA_ADMIN_PASSWORD" "$work/admin"
credentials cassandra cassandra "$work/default"

# 1. Take over.
login=""
deadline=$((SECONDS + wait_s))
while :; do
  if answers "$work/admin"; then
    login=admin
    break
  elif answers "$work/default"; then
    login=default
    break
  fi
  [ "$SECONDS" -lt "$deadline" ] || break
  sleep 2
done
case $login in
admin) echo "logged in as role $admin_role" ;;
default)
  echo "a new node: the default superuser creates role $admin_role"
  # One session: the replication and the role. On a cluster the default superuser's own row
  # has one replica until repaired; once system_auth has three, a node reads it at QUORUM and
  # may find it on neither of the two it asks, and then denies the superuser its status. So a
  # refusal is tried again (every statement is idempotent), first reading that row at ALL,
  # whose read repair copies it to every replica (as Cassandra._as_default_superuser does).
  mapfile -t statements < <(replication)
  statements+=("CREATE ROLE IF NOT EXISTS $admin_role WITH SUPERUSER = true AND LOGIN = true AND PASSWORD = $(quoted "$CASSANDRA_ADMIN_PASSWORD");")
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    if [ "$attempt" = 1 ]; then
      cql "$work/default" "${statements[@]}" && break
    else
      cql "$work/default" "CONSISTENCY ALL;" "SELECT role FROM system_auth.roles WHERE role = 'cassandra';" \
        "CONSISTENCY ONE;" "${statements[@]}" && break
    fi
    [ "$attempt" -lt 10 ] || {
      echo "the default superuser could not create role $admin_role in 10 attempts (cqlsh's errors above)" >&2
      exit 1
    }
    echo "refused (attempt $attempt of 10); trying again" >&2
    sleep 3
  done
  ;;
*)
  echo "Cassandra at $host:$port accepted neither role $admin_role's login nor the default superuser's within ${wait_s}s;" \
    "cqlsh said: $(tail -n 1 "$work/answer" 2>/dev/null)." \
    "If that is a refused login, its admin password is not CASSANDRA_ADMIN_PASSWORD of .env: restore it, or start over" \
    "(docker compose down -v deletes all data)" >&2
  exit 1
  ;;
esac
cql "$work/admin" "DROP ROLE IF EXISTS cassandra;"

# 2. Replication (again: idempotent), 3. the schema.
mapfile -t statements < <(replication)
[ "${#statements[@]}" -eq 0 ] || cql "$work/admin" "${statements[@]}"
for f in "$sql_dir"/*.cql; do
  echo "applying $f"
  "$cqlsh" --credentials "$work/admin" --request-timeout=60 "$host" "$port" -f "$f"
done

# 4. The job's and the readers' roles.
role() { # ROLE PASSWORD PERMISSION...
  local name=$1 password=$2
  shift 2
  local statements=(
    "CREATE ROLE IF NOT EXISTS $name WITH LOGIN = true AND PASSWORD = $(quoted "$password");"
    "ALTER ROLE $name WITH LOGIN = true AND PASSWORD = $(quoted "$password");"
  )
  for permission in "$@"; do statements+=("GRANT $permission ON KEYSPACE cdc TO $name;"); done
  cql "$work/admin" "${statements[@]}"
}
role cdcpipe_job "$CASSANDRA_JOB_PASSWORD" SELECT MODIFY ALTER
role cdcpipe_reader "$CASSANDRA_READER_PASSWORD" SELECT
echo "roles $admin_role, cdcpipe_job and cdcpipe_reader ready"
