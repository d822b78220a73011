#!/usr/bin/env bash
# Worker scaling on one many-core machine: the sliding count (partitioned
# and ordered output) and the trending job on its generator, at 1, 2, 4, 8
# and 16 workers, and as 2 processes of 8 workers. Every bench run checks
# its results against its reference (or, for the trending cluster, against
# the one-process run), so a figure here is also a check that the layouts
# agree.
#
#   scripts/scaling.sh [OUT]
#
# KEYFLOW names the binary (a release build; default target/release/keyflow),
# WORK the scratch directory (default /dev/shm/keyflow-scaling: in memory,
# so that the disk does not set the pace of the outputs). WORKERS (default
# 1,2,4,8,16), PROCESSES and PROCESS_WORKERS (default 2 and 8),
# SLIDING_EVENTS (default 20000000) and TRENDING_RATE (events a second of
# event time over two hours; default 3000) change the sizes. Each step
# writes OUT/NAME.json as it ends, so a run cut short keeps what it
# finished. With SINK_BENCH naming a release build of
# `dataflow/examples/sink_bench.rs`, the sliding count's paths to a sink are
# also measured against a per-worker reduce, with no files.
set -euo pipefail

k=${KEYFLOW:-target/release/keyflow}
out=${1:-scaling-out}
work=${WORK:-/dev/shm/keyflow-scaling}
workers=${WORKERS:-1,2,4,8,16}
processes=${PROCESSES:-2}
process_workers=${PROCESS_WORKERS:-8}
cluster=${processes}x$process_workers
mkdir -p "$out"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

sliding_events=${SLIDING_EVENTS:-20000000}
trending_rate=${TRENDING_RATE:-3000}
trending_events=$((trending_rate * 7200))

{
    echo "cores: $(nproc)"
    grep -m1 'model name' /proc/cpuinfo || true
    free -g | head -2 || true
} >"$out/machine.txt"

step() {
    local name=$1
    shift
    echo "== $name: $*" >&2
    local start=$SECONDS
    "$@" >"$out/$name.json"
    echo "   $((SECONDS - start)) s" >&2
}

sliding() {
    step "$1" "$k" bench sliding --events "$sliding_events" --keys 1000000 \
        --dir "$work/sliding" "${@:2}"
}

sliding sliding-partitioned --workers "$workers" --rounds 3 --partitioned
sliding "sliding-partitioned-$cluster" --workers "$process_workers" \
    --processes "$processes" --rounds 3 --partitioned

for round in 1 2; do
    for w in ${workers//,/ }; do
        reference=()
        [ "$w$round" = 11 ] || reference=(--no-reference)
        step "trending-$w-$round" "$k" bench trending --events "$trending_events" \
            --articles 1000000 --workers "$w" "${reference[@]}"
    done
done

# The trending job as a user starts it, one process of all the workers
# against several processes sharing them, timed by the shell (process start and the mesh included), their
# outputs compared byte for byte.
trending_run() {
    "$@" --articles 1000000 --seed 42 --rate "$trending_rate" --duration 2h \
        --quiet --out "$work/$layout.jsonl"
}
{
    echo "["
    for round in 1 2 3; do
        for layout in one "$cluster"; do
            start=$(date +%s.%N)
            if [ "$layout" = one ]; then
                trending_run "$k" run trending --workers $((processes * process_workers))
            else
                trending_run "$k" cluster --processes "$processes" \
                    --workers "$process_workers" -- run trending
            fi
            end=$(date +%s.%N)
            sep=","
            [ "$round$layout" = "3$cluster" ] && sep=""
            seconds=$(awk "BEGIN { print $end - $start }")
            echo "{\"layout\": \"$layout\", \"round\": $round, \"seconds\": $seconds}$sep"
        done
        cmp "$work/one.jsonl" "$work/$cluster.jsonl"
    done
    echo "]"
} >"$out/trending-cluster.json"

sliding sliding-ordered --workers "$workers"
sliding "sliding-ordered-$cluster" --workers "$process_workers" --processes "$processes"
if [ -n "${SINK_BENCH:-}" ]; then
    most=$(tr ',' '\n' <<<"$workers" | sort -n | tail -1)
    echo "== sink-bench" >&2
    "$SINK_BENCH" --events 20000000 --workers "$workers" --partitions "$most" \
        --paths reduce,ordered,partitioned --repeat 3 >"$out/sink-bench.txt"
fi
echo "done" >&2
