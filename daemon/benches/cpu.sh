#!/usr/bin/env bash
# CPU time per message, natively, under `perf stat`: the bare `multiple`-ack consumer (baseline
# (c) of the throughput bench) and `warren run` with the no-op plugin, alternating, each draining
# a queue filled beforehand with N x 1 KiB persistent messages.
#
#   daemon/benches/cpu.sh [PREFETCH] [N] [ROUNDS]      (defaults: 100 100000 3)
#
# Needs perf, a release build (`cargo bench -p warren --bench throughput --no-run`), RabbitMQ
# on 127.0.0.1:5672 as guest (or WARREN_BENCH_URL). Prints, per run, task-clock, user and
# system time in µs per message. warren's start-up, stop and the second it idles before it is
# stopped are measured once on an empty queue and taken off its figures ("fixed").
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
prefetch="${1:-100}"
n="${2:-100000}"
rounds="${3:-3}"
url="${WARREN_BENCH_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
# shellcheck source=common.sh
source "$repo/daemon/benches/common.sh"
find_binaries
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 1; }

out="$(mktemp -d /tmp/warren-cpu.XXXXXX)"
warren_pid=""
trap '[[ -n "$warren_pid" ]] && kill -TERM "$warren_pid" 2>/dev/null || true' EXIT

# count QUEUE COLUMN: the queue's `messages` or `consumers`.
count() {
    rabbitmqctl -q list_queues name "$2" 2>/dev/null | awk -v q="$1" '$1 == q { print $2 }'
}

# times FILE: perf's task-clock (ms), user and system time (s).
times() {
    awk '/task-clock/ { gsub(",", "", $1); clock = $1 }
         /seconds user/ { user = $1 }
         /seconds sys/ { sys = $1 }
         END { print clock, user, sys }' "$1"
}

# report NAME FILE [FIXED]: µs per message of task-clock, user and system time, less FIXED's.
report() {
    local fixed="0 0 0"
    [[ -n "${3:-}" ]] && fixed="$(times "$3")"
    echo "$(times "$2") $fixed" | awk -v name="$1" -v n="$n" '{
        printf "%-7s task-clock %5.1f µs  user %5.1f µs  sys %5.1f µs per message\n", name,
            ($1 - $4) * 1000 / n, ($2 - $5) * 1e6 / n, ($3 - $6) * 1e6 / n }'
}

# start_warren DIR QUEUE: warren.toml in DIR (the no-op plugin on QUEUE), the cache warmed,
# then `warren run` under perf stat, writing DIR/perf.
start_warren() {
    mkdir -p "$1"
    noop_config "$1/warren.toml" "$out/cache" "$url" "$2" "$prefetch" warren-bench.cpu
    "$warren" check --config "$1/warren.toml" >/dev/null 2>>"$out/log"
    perf stat -o "$1/perf" "$warren" run --config "$1/warren.toml" >/dev/null 2>>"$1/warren.log" &
    warren_pid=$!
}

stop_warren() {
    kill -TERM "$(pgrep -P "$warren_pid" -x warren || echo "$warren_pid")"
    wait "$warren_pid" || true
    warren_pid=""
}

forget() {
    rabbitmqctl -q delete_queue "$1" >/dev/null 2>&1 || true
    rabbitmqctl -q delete_queue "$1.dead" >/dev/null 2>&1 || true
}

echo "prefetch $prefetch, $n messages of 1 KiB, $rounds rounds; perf output in $out"
# The fixed cost: start, consume an empty queue for a second, stop.
queue="warren-bench.cpu.$$.fixed"
start_warren "$out/fixed" "$queue"
until [[ "$(count "$queue" consumers)" == 1 ]]; do sleep 0.2; done
sleep 1
stop_warren
forget "$queue"
echo "fixed   task-clock $(times "$out/fixed/perf" | cut -d' ' -f1) ms (start, 1 s idle, stop)"

for round in $(seq "$rounds"); do
    for drainer in bare warren; do
        queue="warren-bench.cpu.$$.$drainer.$round"
        "$bench" --url "$url" --fill "$queue" --messages "$n" >/dev/null 2>>"$out/log"
        if [[ $drainer == bare ]]; then
            perf stat -o "$out/perf.bare.$round" "$bench" --url "$url" --drain-bare "$queue" \
                --messages "$n" --prefetch "$prefetch" >/dev/null 2>>"$out/log"
            report bare "$out/perf.bare.$round"
        else
            start_warren "$out/warren.$round" "$queue"
            until [[ "$(count "$queue" messages)" == 0 ]]; do sleep 0.2; done
            stop_warren
            report warren "$out/warren.$round/perf" "$out/fixed/perf"
        fi
        forget "$queue"
    done
done
