#!/usr/bin/env bash
# Runs the Go benchmarks of the hot paths (pgoutput decoding, the minute
# window, the rules' state) and summarises them with benchstat.
#
#   scripts/bench-go.sh                 COUNT=10 runs of each benchmark
#   QUICK=1 scripts/bench-go.sh         3 runs of 200ms each, for CI
#   COUNT=5 BENCH=Decode scripts/bench-go.sh
#
# Output in ${OUT:-artifacts/bench}: go-bench.txt (raw), go-benchstat.txt and,
# when go-bench.base.txt exists there, go-benchstat-compare.txt (base vs now).
# Before/after an optimisation:
#   cp artifacts/bench/go-bench.txt artifacts/bench/go-bench.base.txt
#   (change the code) && scripts/bench-go.sh
#
# internal/api is left out on purpose: its benchmark needs minutes of setup
# (a full-scale sink) and is run by its own target.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

out=${OUT:-artifacts/bench}
if [ "${QUICK:-0}" = 1 ]; then
  count=${COUNT:-3}
  benchtime=${BENCHTIME:-200ms}
else
  count=${COUNT:-10}
  benchtime=${BENCHTIME:-1s}
fi
bench=${BENCH:-.}
pkgs=(./internal/source ./internal/window ./internal/rules)

mkdir -p "$out"
raw="$out/go-bench.txt"
tmp="$raw.tmp"

log() { printf 'bench-go: %s\n' "$*" >&2; }

# benchstat keys its tables on the "key: value" header lines, so machine
# details go to a file of their own rather than into go-bench.txt, where a
# differing value would split a before/after comparison into two tables.
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
  echo "go: $(go env GOVERSION)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo 2>/dev/null)"
  echo "count: $count benchtime: $benchtime bench: $bench"
} >"$out/go-bench-machine.txt"
sed 's/^/bench-go: /' "$out/go-bench-machine.txt" >&2

start=$SECONDS
: >"$tmp"
for pkg in "${pkgs[@]}"; do
  t0=$SECONDS
  log "$pkg: -count $count -benchtime $benchtime ..."
  # The raw lines also go to the terminal, so a long run shows it is alive.
  go test -run '^$' -bench "$bench" -benchmem -count "$count" -benchtime "$benchtime" "$pkg" | tee -a "$tmp"
  log "$pkg: done in $((SECONDS - t0))s (total $((SECONDS - start))s)"
done
# Only a complete run replaces the previous one.
mv "$tmp" "$raw"

benchstat=$(command -v benchstat || true)
if [ -z "$benchstat" ]; then
  gobin="$root/artifacts/gobin"
  benchstat="$gobin/benchstat"
  if [ ! -x "$benchstat" ]; then
    log "installing benchstat into $gobin"
    GOBIN="$gobin" go install golang.org/x/perf/cmd/benchstat@latest
  fi
fi

# Run from $out so that benchstat's column headers are the bare file names.
(cd "$out" && "$benchstat" go-bench.txt >go-benchstat.txt)
log "wrote $raw and $out/go-benchstat.txt"
if [ -f "$out/go-bench.base.txt" ]; then
  (cd "$out" && "$benchstat" go-bench.base.txt go-bench.txt >go-benchstat-compare.txt)
  log "wrote $out/go-benchstat-compare.txt (go-bench.base.txt vs go-bench.txt)"
fi
log "all done in $((SECONDS - start))s"
