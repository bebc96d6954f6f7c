#!/usr/bin/env bash
# Instructions per message under callgrind: warren with the no-op plugin against the bare
# `multiple`-ack consumer (baseline (c) of the throughput bench), each draining the same queue.
#
#   daemon/benches/profile.sh [PREFETCH] [SMALL] [LARGE]      (defaults: 100 5000 20000)
#
# Needs valgrind, a release build (`cargo bench -p warren --bench throughput --no-run`, which
# builds target/release/warren too), RabbitMQ on 127.0.0.1:5672 as guest (or WARREN_BENCH_URL).
# Callgrind counts user-space instructions, the same from run to run on a busy machine; system
# calls are not in them (the throughput bench's CPU times are).
#
# For each drainer and each size N (SMALL, then LARGE): a fresh queue is filled with N x 1 KiB
# persistent messages (natively), then the drainer runs under callgrind from start to exit:
#   bare    the bench binary's `--drain-bare`: consume, one `multiple` ack per 50, exit at N
#   warren  `warren run` with the no-op plugin as in the throughput phase (compile cache warmed
#           first by `warren check`, under valgrind as well), stopped with SIGTERM once nothing is left in the queue,
#           ready or unacked
# Start-up and shutdown cost the same at both sizes, so the cost of one message is
# (Ir(LARGE) - Ir(SMALL)) / (LARGE - SMALL), in all and by category (the self cost of each
# function, put in the first category whose pattern its name matches). The callgrind files
# stay in the output folder (printed first) for callgrind_annotate.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$repo/target}"
prefetch="${1:-100}"
small="${2:-5000}"
large="${3:-20000}"
url="${WARREN_BENCH_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
# WARREN_PROFILE_BIN=DIR: take `warren` and `throughput` from DIR instead (binaries kept aside,
# say those of the code before a change).
# shellcheck source=common.sh
source "$repo/daemon/benches/common.sh"
find_binaries
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

out="$(mktemp -d /tmp/warren-profile.XXXXXX)"
warren_pid=""
cleanup() {
    [[ -n "$warren_pid" ]] && kill -TERM "$warren_pid" 2>/dev/null || true
}
trap cleanup EXIT

# unsettled QUEUE: messages in QUEUE, ready or unacked.
unsettled() {
    rabbitmqctl -q list_queues name messages 2>/dev/null | awk -v q="$1" '$1 == q { print $2 }'
}

# ir FILE: the total instruction count callgrind wrote.
ir() {
    awk '/^(summary|totals):/ { print $2; exit }' "$1"
}

# run DRAINER N: fills a fresh queue with N messages and drains it under callgrind.
run() {
    local drainer=$1 n=$2
    local queue="warren-bench.profile.$$.$drainer.$n"
    "$bench" --url "$url" --fill "$queue" --messages "$n" >/dev/null 2>>"$out/log"
    local file="$out/callgrind.$drainer.$n"
    local cg=(valgrind --tool=callgrind --callgrind-out-file="$file" --dump-instr=no)
    case $drainer in
    bare)
        "${cg[@]}" "$bench" --url "$url" --drain-bare "$queue" --messages "$n" --prefetch "$prefetch" \
            >/dev/null 2>>"$out/log"
        ;;
    warren)
        local dir="$out/warren.$n"
        mkdir -p "$dir"
        noop_config "$dir/warren.toml" cache "$url" "$queue" "$prefetch" warren-bench.profile
        # The cache is warmed under valgrind too: valgrind's CPU reports other features than
        # the host's, so a cache warmed natively would not match and `run` would compile the
        # plugin under callgrind, its compile threads adding noise to the per-message count.
        valgrind --tool=none "$warren" check --config "$dir/warren.toml" >/dev/null 2>>"$out/log"
        # Callgrind runs warren some 50 times slower: a message's first step takes longer than
        # warren's limit for running it in the pipeline's loop (50 us), which would send every
        # message to a task of its own as natively only a slow plugin's are. The limit is
        # scaled alike.
        WARREN_INLINE_MAX_US=1000000000 "${cg[@]}" "$warren" run --config "$dir/warren.toml" \
            >/dev/null 2>>"$dir/warren.log" &
        warren_pid=$!
        until [[ "$(unsettled "$queue")" == 0 ]]; do sleep 1; done
        kill -TERM "$warren_pid"
        wait "$warren_pid" || true
        warren_pid=""
        ;;
    esac
    rabbitmqctl -q delete_queue "$queue" >/dev/null 2>&1 || true
    rabbitmqctl -q delete_queue "$queue.dead" >/dev/null 2>&1 || true
    ir "$file"
}

# The categories of the breakdown: a name and an extended regular expression matched against
# callgrind_annotate's "file:function" column (self cost, so nothing is counted twice; the
# first category that matches takes the function).
categories=(
    "plugin call (wasmtime, the guest)|wasmtime|cranelift|^[?][?][?]:0x|warren::contract|warren::plugin::invoke|warren::plugin::host"
    "tokio tasks, scheduler, wakers|tokio::runtime::(task|scheduler|context|park|driver)|tokio::loom|tokio_util::task|std::thread::local"
    "tokio sync (semaphore, mpsc, notify, cancel)|tokio::sync|tokio_util::sync|tokio::runtime::coop"
    "tokio time (timers, timeouts)|tokio::time|tokio::runtime::time"
    "ack/settle (lapin acker, warren settle)|lapin::acker|warren::broker::settle|BTreeMap|btree"
    "delivery to Message (headers, properties)|warren::broker::convert|warren::broker::consume|amq_protocol_types"
    "metrics|prometheus_client|warren::metrics|clock_gettime|Instant::now|Timespec"
    "logging fields (tracing)|tracing"
    "pipeline logic (process, decide, publish check)|warren::pipeline|warren::decision|warren::broker::publish|arc_swap"
    "lapin frames, I/O, parsing|lapin|amq_protocol|nom|flume|async_io|polling|mio|tcp|socket"
    "allocator (malloc, free)|malloc|free|_int_|realloc|cfree|tcache"
    "memcpy, memset|memcpy|memmove|memset"
    "other|."
)

# breakdown FILE: self instructions of FILE by category, one "category<TAB>Ir" line each.
breakdown() {
    callgrind_annotate --auto=no --threshold=100 "$1" 2>/dev/null \
        | awk '/^ *[0-9,]+ +\(/' \
        | sed -E 's/^ *([0-9,]+) +\([^)]*\) +(.*)$/\1\t\2/' \
        | tr -d ',' \
        | awk -F'\t' -v cats="$(printf '%s\n' "${categories[@]}")" '
            BEGIN { n = split(cats, lines, "\n"); for (i = 1; i <= n; i++) { split(lines[i], f, "|"); name[i] = f[1]; re[i] = substr(lines[i], length(f[1]) + 2) } }
            {
                if ($2 == "PROGRAM TOTALS") next
                for (i = 1; i <= n; i++) if ($2 ~ re[i]) { sum[i] += $1; break }
            }
            END { for (i = 1; i <= n; i++) printf "%s\t%d\n", name[i], sum[i] }'
}

echo "prefetch $prefetch, $small and $large messages of 1 KiB; callgrind files in $out"
declare -A per
for drainer in bare warren; do
    a=$(run "$drainer" "$small")
    b=$(run "$drainer" "$large")
    per[$drainer]=$(((b - a) / (large - small)))
    echo "$drainer: Ir $a ($small msgs), $b ($large msgs): ${per[$drainer]} instructions per message"
done
awk -v w="${per[warren]}" -v b="${per[bare]}" \
    'BEGIN { printf "warren / bare: %.2f (%d more instructions per message)\n", w / b, w - b }'

# The breakdown: per category, (Ir(LARGE) - Ir(SMALL)) / (LARGE - SMALL) for each drainer.
for drainer in bare warren; do
    for n in "$small" "$large"; do
        breakdown "$out/callgrind.$drainer.$n" >"$out/breakdown.$drainer.$n"
    done
done
echo
echo "| instructions per message | bare (c) | warren | warren - bare |"
echo "|---|---:|---:|---:|"
paste "$out/breakdown.bare.$small" "$out/breakdown.bare.$large" \
    "$out/breakdown.warren.$small" "$out/breakdown.warren.$large" \
    | awk -F'\t' -v d=$((large - small)) '{
        b = ($4 - $2) / d; w = ($8 - $6) / d; tb += b; tw += w
        printf "| %s | %.0f | %.0f | %+.0f |\n", $1, b, w, w - b
    } END { printf "| **total** | **%.0f** | **%.0f** | **%+.0f** |\n", tb, tw, tw - tb }'
