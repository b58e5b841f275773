#!/usr/bin/env bash
# Point-in-time recovery of a ~1 GB database with playbooks/pitr.yml, as an operator runs
# it: pgbench data (scale S, ~15 MB per unit) in a scratch database on the lab's primary,
# a full backup, 60 s of write load with a noted moment in the middle, then a side
# restore to that moment. Prints the playbook's own restore and WAL replay seconds, the
# wall time of the whole playbook, the WAL replayed and whether the rows at the moment
# are there. Needs the 4-host lab (`make lab`); removes the copy and the scratch
# database at the end. Run on demand:
#   bench/pitr_bench.sh [SCALE=70]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/common.sh
. bench/common.sh
scale=${1:-70}
primary=${MDUS_PRIMARY:-mdus-pg1}
repo=${MDUS_REPO:-mdus-repo1}
log=$(mktemp -d /tmp/mdus-pitr-bench.XXXXXX)

as_pg() { local h=$1; shift; docker exec "$h" runuser -u postgres -- "$@"; }
psql_p() { as_pg "$primary" psql -X -Atq "$@"; }
cleanup() {
  ansible-playbook -i inventories/lab playbooks/pitr.yml -e pitr_remove=true >"$log/remove.log" 2>&1 || true
  psql_p -c "DROP DATABASE IF EXISTS bench_pitr" >/dev/null || true
}
trap cleanup EXIT

echo "loading pgbench scale ${scale} into bench_pitr on ${primary}"
psql_p -c "DROP DATABASE IF EXISTS bench_pitr" -c "CREATE DATABASE bench_pitr"
as_pg "$primary" pgbench -q -i -s "$scale" bench_pitr >/dev/null 2>&1
bytes=$(psql_p -c "SELECT sum(pg_database_size(oid)) FROM pg_database")
printf 'cluster size              %6d MB\n' "$((bytes / 1048576))"

t0=$(date +%s.%N)
as_pg "$repo" pgbackrest --stanza=mdus --type=full backup
t1=$(date +%s.%N)
printf 'full backup               %s s\n' "$(secs "$t0" "$t1")"

lsn0=$(psql_p -c "SELECT pg_current_wal_lsn()")
as_pg "$primary" pgbench -n -c 4 -j 2 -T 60 bench_pitr >/dev/null 2>&1 &
load=$!
sleep 30
psql_p -d bench_pitr -c "CREATE TABLE IF NOT EXISTS pitr_mark (at timestamptz)" \
  -c "INSERT INTO pitr_mark VALUES (now())"
sleep 1
moment=$(psql_p -c "SELECT to_char(now(), 'YYYY-MM-DD HH24:MI:SS.US+00')")
sleep 1
psql_p -d bench_pitr -c "DELETE FROM pitr_mark"
wait "$load"
lsn1=$(psql_p -c "SELECT pg_current_wal_lsn()")
wal=$(psql_p -c "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')::bigint")
printf 'WAL after the backup      %6d MB (moment %s)\n' "$((wal / 1048576))" "$moment"
segment=$(psql_p -c "SELECT pg_walfile_name(pg_current_wal_lsn())")
psql_p -c "SELECT pg_switch_wal()" >/dev/null
until [ "$(psql_p -c "SELECT last_archived_wal >= '$segment' FROM pg_stat_archiver")" = t ]; do
  sleep 1
done

t2=$(date +%s.%N)
ansible-playbook -i inventories/lab playbooks/pitr.yml -e "pitr_target_time='$moment'" >"$log/pitr.log" 2>&1
t3=$(date +%s.%N)
field() { grep -oE "$1: '?[A-Za-z0-9.-]+" "$log/pitr.log" | tail -1 | awk '{print $2}' | tr -d "'"; }
restore=$(field restore_seconds)
replay=$(field replay_seconds)
host=$(field host)
rows=$(as_pg "$host" psql -X -Atq -h /var/lib/postgresql/mdus-pitr -p 5499 -d bench_pitr \
  -c "SELECT count(*) FROM pitr_mark")
printf 'pitr restore (pgBackRest) %6s s\n' "$restore"
printf 'pitr WAL replay + promote %6s s\n' "$replay"
printf 'pitr playbook, wall       %s s (on %s)\n' "$(secs "$t2" "$t3")" "$host"
printf 'row written at the moment %6s (1 = recovered to the moment, deleted after it)\n' "$rows"
printf 'logs:                     %s\n' "$log"
