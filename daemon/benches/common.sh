# Sourced by profile.sh and cpu.sh (with `repo` and `target` set): the binaries both run and
# the warren.toml they give warren.

# find_binaries: sets `warren` and `bench` (the throughput bench binary), from
# $WARREN_PROFILE_BIN if set (binaries kept aside, say those of the code before a change),
# else from the release build; exits saying what to build if one is missing.
find_binaries() {
    if [[ -n "${WARREN_PROFILE_BIN:-}" ]]; then
        warren="$WARREN_PROFILE_BIN/warren"
        bench="$WARREN_PROFILE_BIN/throughput"
    else
        warren="$target/release/warren"
        bench="$(find "$target/release/deps" -maxdepth 1 -type f -executable \
            -name 'throughput-*' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)"
    fi
    [[ -x "$warren" && -n "$bench" ]] || {
        echo "build first: cargo bench -p warren --bench throughput --no-run" >&2
        exit 1
    }
    [[ -f "$repo/tests/plugins/dist/scripted.wasm" ]] || {
        echo "run plugins/build first" >&2
        exit 1
    }
}

# noop_config FILE CACHE_DIR URL QUEUE PREFETCH NAME: writes FILE, warren as the throughput
# phase runs it: the no-op plugin (scripted.wasm, `mode = "ack"`, which reads nothing of the
# message) on QUEUE, concurrency = prefetch, defaults otherwise; the queue as the bench's
# `--fill` declares it (x-expires: the test kit's); the connection named NAME.
noop_config() {
    cat >"$1" <<EOF
cache_dir = "$2"
shutdown_grace_ms = 5000
[broker]
url = "$3"
connection_name = "$6"
[plugins.noop]
path = "$repo/tests/plugins/dist/scripted.wasm"
config = { mode = "ack" }
[[queues]]
name = "$4"
arguments = { "x-expires" = 120000 }
[[pipelines]]
name = "bench"
queue = "$4"
plugin = "noop"
prefetch = $5
concurrency = $5
EOF
}
