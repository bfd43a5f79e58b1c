#!/usr/bin/env bash
# Runs every Go test in two steps. The longest packages start first, so that
# the two cores stay busy to the end instead of waiting on one late long
# package. The quick benchmark run (cmd/riskwatch-bench: a 5,000 TPS peak
# for 80 s) then runs alone: beside the end-to-end tests it fell tens of
# seconds behind and failed them and itself for want of CPU, not for a bug.
set -euo pipefail
GO=${GO:-go}
module=$($GO list -m)
first=(cmd/riskwatch internal/sim internal/engine internal/binlog deploy/grafana)
last=(cmd/riskwatch-bench)
pkgs=()
for p in "${first[@]}"; do pkgs+=("$module/$p"); done
skip=$(printf '%s\n' "${first[@]/#/$module/}" "${last[@]/#/$module/}")
while read -r p; do
  grep -qxF "$p" <<<"$skip" || pkgs+=("$p")
done < <($GO list ./...)
$GO test -count=1 -timeout 20m "${pkgs[@]}"
$GO test -count=1 -timeout 20m "${last[@]/#/$module/}"
