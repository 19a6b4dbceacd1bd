#!/usr/bin/env bash
# Run `losslens demo` for several seeds at once on a machine with many cores, CPU only, and keep each
# seed's summary.json, timings.json and log under OUT (default ./demo-seeds). Used for docs/demo.md.
#   bench/demo_seeds.sh OUT WORKERS SEED...
set -uo pipefail
out=${1:-demo-seeds}; workers=${2:-2}; shift 2 || true
seeds=${*:-"0 1 2"}
mkdir -p "$out"
for s in $seeds; do
    CUDA_VISIBLE_DEVICES="" python -m losslens demo --seed "$s" --out "$out/run-$s" --workers "$workers" --quiet \
        > "$out/demo-$s.log" 2>&1 &
done
wait
for s in $seeds; do
    cp "$out/run-$s/summary.json" "$out/summary-$s.json" 2>/dev/null
    cp "$out/run-$s/timings.json" "$out/timings-$s.json" 2>/dev/null
done
