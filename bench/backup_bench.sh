#!/usr/bin/env bash
# pgBackRest backup and restore wall times and throughput for the lab database.
# Loads pgbench data (scale S, ~15 MB per unit) into a scratch database on the primary,
# then times: a full backup, an incremental after a short write load, a restore of the
# full backup into a temp directory on the restore host (--archive-mode=off, never writes
# to the repository) and the time until that copy is consistent and promoted.
#   bench/backup_bench.sh [SCALE=20]
# Containers: MDUS_PRIMARY (mdus-pg1), MDUS_REPO (mdus-repo1), MDUS_RESTORE_HOST (mdus-pg2);
# for the molecule scenario: MDUS_PRIMARY=mdus-lab-pg1 MDUS_REPO=mdus-lab-repo
# MDUS_RESTORE_HOST=mdus-lab-pg2.
set -euo pipefail
scale=${1:-20}
primary=${MDUS_PRIMARY:-mdus-pg1}
repo=${MDUS_REPO:-mdus-repo1}
restore_host=${MDUS_RESTORE_HOST:-mdus-pg2}
stanza=${MDUS_STANZA:-mdus}
port=5498

as_pg() { local h=$1; shift; docker exec "$h" runuser -u postgres -- "$@"; }
psql_p() { as_pg "$primary" psql -X -Atq "$@"; }
pgbr() { local h=$1; shift; as_pg "$h" pgbackrest --stanza="$stanza" "$@"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
mbps() { awk -v bytes="$1" -v s="$2" 'BEGIN { printf "%.1f", bytes / 1048576 / s }'; }
last_backup() {  # size, delta, repo size of the newest backup
  pgbr "$repo" --output=json info | python3 -c '
import json, sys
b = json.load(sys.stdin)[0]["backup"][-1]
print(b["info"]["size"], b["info"]["delta"], b["info"]["repository"]["delta"], b["label"])'
}

echo "loading pgbench scale ${scale} into database bench_backup on ${primary}"
psql_p -c "DROP DATABASE IF EXISTS bench_backup" -c "CREATE DATABASE bench_backup"
as_pg "$primary" pgbench -q -i -s "$scale" bench_backup >/dev/null 2>&1
db_bytes=$(psql_p -c "SELECT sum(pg_database_size(oid)) FROM pg_database")
echo "cluster size $((db_bytes / 1048576)) MB; vCPUs $(docker exec "$repo" nproc)"

t0=$(now); pgbr "$repo" --type=full backup; t1=$(now)
read -r size delta repo_delta label <<<"$(last_backup)"
full_s=$(secs "$t0" "$t1")
printf 'full backup      %6s s  %6s MB read  %6s MB/s  repo +%s MB (zst+aes)\n' \
  "$full_s" "$((size / 1048576))" "$(mbps "$size" "$full_s")" "$((repo_delta / 1048576))"

as_pg "$primary" pgbench -n -c 4 -j 2 -T 15 bench_backup >/dev/null 2>&1
t0=$(now); pgbr "$repo" --type=incr backup; t1=$(now)
read -r _ idelta irepo _ <<<"$(last_backup)"
incr_s=$(secs "$t0" "$t1")
printf 'incr backup      %6s s  %6s MB changed  repo +%s MB\n' \
  "$incr_s" "$((idelta / 1048576))" "$((irepo / 1048576))"

scratch=$(docker exec "$restore_host" mktemp -d /tmp/mdus-bench-restore-XXXXXX)
docker exec "$restore_host" install -d -o postgres -g postgres -m 0700 "$scratch/data"
docker exec "$restore_host" chown postgres:postgres "$scratch"
cleanup() {
  as_pg "$restore_host" /usr/lib/postgresql/15/bin/pg_ctl -D "$scratch/data" -m immediate stop \
    >/dev/null 2>&1 || true
  docker exec "$restore_host" rm -rf "$scratch"
  psql_p -c "DROP DATABASE IF EXISTS bench_backup" >/dev/null
}
trap cleanup EXIT
t0=$(now)
pgbr "$restore_host" --pg1-path="$scratch/data" --set="$label" --archive-mode=off \
  --type=immediate --target-action=promote \
  "--recovery-option=restore_command=pgbackrest --stanza=$stanza --pg1-path=$scratch/data --no-archive-async archive-get %f \"%p\"" \
  restore
t1=$(now)
restore_s=$(secs "$t0" "$t1")
printf 'restore (files)  %6s s  %6s MB written  %6s MB/s\n' \
  "$restore_s" "$((size / 1048576))" "$(mbps "$size" "$restore_s")"
docker exec "$restore_host" sh -c "touch $scratch/data/postgresql.conf $scratch/data/pg_ident.conf
  echo 'local all all peer' > $scratch/data/pg_hba.conf; chown postgres: $scratch/data/*.conf"
as_pg "$restore_host" /usr/lib/postgresql/15/bin/pg_ctl -D "$scratch/data" -l "$scratch/log" -w -t 300 \
  -o "-p $port -c listen_addresses= -c unix_socket_directories=$scratch -c shared_buffers=128MB -c hot_standby=off" start \
  >/dev/null
until [ "$(as_pg "$restore_host" psql -X -Atq -h "$scratch" -p "$port" -d postgres \
  -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; do sleep 0.2; done
t2=$(now)
printf 'recovery to open %6s s  (WAL replay through archive-get, promote)\n' "$(secs "$t1" "$t2")"
printf 'restore total    %6s s\n' "$(secs "$t0" "$t2")"
rows=$(as_pg "$restore_host" psql -X -Atq -h "$scratch" -p "$port" -d bench_backup \
  -c 'SELECT count(*) FROM pgbench_accounts')
echo "restored pgbench_accounts rows: ${rows} (expected $((scale * 100000)))"
