#!/usr/bin/env bash
# Start time with a cold and a warm compile cache, measured side by side in one run.
#
#   daemon/benches/start.sh [WARREN_BINARY] [ROUNDS]
#
# Needs plugins/build and plugins/examples/build (the Python and JS routers), RabbitMQ on
# 127.0.0.1:5672 as guest (or WARREN_BENCH_URL) for the `run` phase, and /usr/bin/time.
# Results: BENCHMARKS.md ("Start time and the compile cache").
#
# Two configs, each in a fresh temporary folder with its own cache_dir:
#   examples  the Python and JS example routers and the printer
#   all       the Python, JS and Rust example routers and the three shipped plugins
# For each config and round: the cache emptied, then
#   check cold   `warren check` (compiles every plugin and fills the cache)
#   check warm   `warren check` again (the cache filled by the first)
#   run cold     the cache emptied, `warren run` from spawn to its "warren ready" log line
#   run warm     `warren run` again, to "warren ready"
# wall time, CPU (user + system) and peak RSS of each. `check` is timed by /usr/bin/time; `run`
# by this script (spawn to the log line, polled every 10 ms; CPU from /proc/PID/stat at that
# moment), then stopped with SIGTERM.
# Last, a Python reload: `warren run` on the examples config with a warm cache, the Python
# router's file replaced (rename) by the Rust router, then by the Python router again, whose
# code is then in the cache; timed from the rename to the "plugin reloaded" log line, with
# the reload's own took_ms.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
warren="${1:-${CARGO_TARGET_DIR:-$repo/target}/release/warren}"
rounds="${2:-3}"
url="${WARREN_BENCH_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
ticks=$(getconf CLK_TCK)

for f in plugins/examples/dist/python_router.wasm plugins/examples/dist/js_router.wasm \
    plugins/examples/dist/rust_router.wasm plugins/dist/printer.wasm; do
    [[ -f "$repo/$f" ]] || { echo "missing $f: run plugins/build and plugins/examples/build" >&2; exit 1; }
done

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# config NAME PLUGINS...: writes $work/NAME/warren.toml with those plugins (name=file) and one
# pipeline (the printer, on a queue that expires).
config() {
    local name=$1
    shift
    local dir="$work/$name"
    mkdir -p "$dir"
    local queue="warren-bench.start.$$.$name"
    {
        echo 'cache_dir = "cache"'
        echo 'shutdown_grace_ms = 1000'
        echo "[broker]"
        echo "url = \"$url\""
        for p in "$@"; do
            echo "[plugins.${p%%=*}]"
            echo "path = \"$repo/${p#*=}\""
        done
        echo "[[queues]]"
        echo "name = \"$queue\""
        echo "durable = false"
        echo "arguments = { \"x-expires\" = 60000 }"
        echo "[[pipelines]]"
        echo "name = \"print\""
        echo "queue = \"$queue\""
        echo "plugin = \"printer\""
    } >"$dir/warren.toml"
}

config examples \
    python_router=plugins/examples/dist/python_router.wasm \
    js_router=plugins/examples/dist/js_router.wasm \
    printer=plugins/dist/printer.wasm
config all \
    python_router=plugins/examples/dist/python_router.wasm \
    js_router=plugins/examples/dist/js_router.wasm \
    rust_router=plugins/examples/dist/rust_router.wasm \
    printer=plugins/dist/printer.wasm \
    sleeper=plugins/dist/sleeper.wasm \
    http_executor=plugins/dist/http_executor.wasm

# check NAME: prints "wall cpu rss_mib" of one `warren check`.
check() {
    /usr/bin/time -f '%e %U %S %M' -o "$work/time" \
        "$warren" check --config "$work/$1/warren.toml" >/dev/null 2>"$work/check.log"
    awk '{ printf "%.2f %.2f %.0f\n", $1, $2 + $3, $4 / 1024 }' "$work/time"
}

# start NAME: starts `warren run` (log in $work/run.log), waits for "warren ready", prints
# "wall cpu rss_mib"; leaves it running as $run_pid (so: not to be called in a subshell).
start() {
    : >"$work/run.log"
    local t0 t1
    t0=$(date +%s.%N)
    "$warren" run --config "$work/$1/warren.toml" --log-format json >/dev/null 2>"$work/run.log" &
    run_pid=$!
    pids+=("$run_pid")
    until grep -q '"warren ready"' "$work/run.log"; do
        kill -0 "$run_pid" 2>/dev/null || { cat "$work/run.log" >&2; exit 1; }
        sleep 0.01
    done
    t1=$(date +%s.%N)
    local cpu rss
    cpu=$(awk -v t="$ticks" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$run_pid/stat")
    rss=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$run_pid/status")
    echo "$(echo "$t1 - $t0" | bc -l | xargs printf '%.2f') $cpu $rss"
}

stop() {
    kill -TERM "$run_pid"
    wait "$run_pid" || true
}

echo "| config | round | phase | cold wall s | warm wall s | warm/cold wall | cold CPU s | warm CPU s | warm/cold CPU | cold peak RSS MiB | warm peak RSS MiB |"
echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for round in $(seq 1 "$rounds"); do
    for name in examples all; do
        rm -rf "$work/$name/cache"
        read -r cw cc cr < <(check "$name")
        read -r ww wc wr < <(check "$name")
        printf '| %s | %d | check | %s | %s | %.3f | %s | %s | %.3f | %s | %s |\n' \
            "$name" "$round" "$cw" "$ww" "$(echo "$ww / $cw" | bc -l)" \
            "$cc" "$wc" "$(echo "$wc / $cc" | bc -l)" "$cr" "$wr"
        rm -rf "$work/$name/cache"
        start "$name" >"$work/result"
        stop
        read -r cw cc cr <"$work/result"
        start "$name" >"$work/result"
        stop
        read -r ww wc wr <"$work/result"
        printf '| %s | %d | run to READY | %s | %s | %.3f | %s | %s | %.3f | %s | %s |\n' \
            "$name" "$round" "$cw" "$ww" "$(echo "$ww / $cw" | bc -l)" \
            "$cc" "$wc" "$(echo "$wc / $cc" | bc -l)" "$cr" "$wr"
    done
done

# The Python reload: the examples config's Python router file replaced by the Rust router,
# then by the Python router again, whose code is in the cache by then.
echo
echo "| Python router reload | rename to \"plugin reloaded\" | took_ms (read, hash, load, instantiate, init) | compile_ms (from the cache) | code |"
echo "|---|---:|---:|---:|---|"
dir="$work/examples"
cp "$repo/plugins/examples/dist/python_router.wasm" "$dir/python_router.wasm"
cp "$repo/plugins/examples/dist/rust_router.wasm" "$dir/rust_router.wasm"
sed -i "s#$repo/plugins/examples/dist/python_router.wasm#$dir/python.wasm#" "$dir/warren.toml"
cp "$dir/python_router.wasm" "$dir/python.wasm"
start examples >/dev/null
for i in $(seq 1 "$rounds"); do
    for build in rust_router python_router; do
        n=$(grep -c '"plugin reloaded"' "$work/run.log" || true)
        cp "$dir/$build.wasm" "$dir/.landing"
        t0=$(date +%s.%N)
        mv "$dir/.landing" "$dir/python.wasm"
        until (($(grep -c '"plugin reloaded"' "$work/run.log" || true) > n)); do sleep 0.005; done
        t1=$(date +%s.%N)
        if [[ $build == python_router ]]; then
            line=$(grep '"plugin reloaded"' "$work/run.log" | tail -1)
            took=$(echo "$line" | sed -E 's/.*"took_ms":([0-9]+).*/\1/')
            compile=$(echo "$line" | sed -E 's/.*"compile_ms":([0-9]+).*/\1/')
            code=$(echo "$line" | sed -E 's/.*"code":"([a-z]+)".*/\1/')
            printf '| round %d | %.0f ms | %s ms | %s ms | %s |\n' \
                "$i" "$(echo "($t1 - $t0) * 1000" | bc -l)" "$took" "$compile" "$code"
        fi
    done
done
stop
