# Sourced by profile.sh and cpu.sh: the warren.toml both run.
#
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
