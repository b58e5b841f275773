#!/usr/bin/env bash
# Runs the molecule scenarios named as arguments (make molecule). Those also listed in
# MDUS_SIDE_BY_SIDE (default "default cluster": one- and two-host scenarios without
# timing-sensitive checks) run at the same time, each into its own log, printed whole
# when both have ended; the others run one after the other (lab; dr, whose drills measure
# write pauses and must not share the CPU with another scenario).
set -euo pipefail
side=" ${MDUS_SIDE_BY_SIDE-default cluster} "
together=()
alone=()
for s in "$@"; do
  if [[ $side == *" $s "* ]]; then together+=("$s"); else alone+=("$s"); fi
done
if [ ${#together[@]} -lt 2 ]; then
  alone=("${together[@]}" "${alone[@]}")
  together=()
fi

logs=$(mktemp -d /tmp/mdus-molecule.XXXXXX)
declare -A pids=()
for s in "${together[@]}"; do
  echo "[molecule] scenario $s (side by side with: ${together[*]}; log $logs/$s.log)"
  molecule test -s "$s" >"$logs/$s.log" 2>&1 &
  pids[$s]=$!
done
failed=()
for s in "${together[@]}"; do
  if ! wait "${pids[$s]}"; then failed+=("$s"); fi
done
for s in "${together[@]}"; do
  echo "[molecule] ---- scenario $s: log ----"
  cat "$logs/$s.log"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "[molecule] FAILED: ${failed[*]}" >&2
  exit 1
fi

for s in "${alone[@]}"; do
  echo "[molecule] scenario $s"
  molecule test -s "$s"
done
