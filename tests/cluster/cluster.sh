#!/usr/bin/env bash
# Starts (up) or stops (down) a three-node RabbitMQ cluster on this machine, beside the system
# broker (which stays untouched on 5672): nodes warren-c1..3@localhost on AMQP ports 5701..5703,
# data under $WARREN_CLUSTER_DIR (default /tmp/warren-cluster).
set -euo pipefail
dir="${WARREN_CLUSTER_DIR:-/tmp/warren-cluster}"
nodes=(1 2 3)

node_env() {
    local n=$1
    export RABBITMQ_NODENAME="warren-c$n@localhost"
    export RABBITMQ_NODE_PORT=$((5700 + n))
    export RABBITMQ_DIST_PORT=$((25700 + n))
    export RABBITMQ_MNESIA_BASE="$dir/c$n/mnesia"
    export RABBITMQ_LOG_BASE="$dir/c$n/log"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/c$n/enabled_plugins"
    export RABBITMQ_CONFIG_FILE="$dir/c$n/rabbitmq.conf"
}

ctl() { local n=$1; shift; rabbitmqctl -q -n "warren-c$n@localhost" "$@"; }

case "${1:-}" in
up)
    for n in "${nodes[@]}"; do
        mkdir -p "$dir/c$n/mnesia" "$dir/c$n/log"
        echo "[]." > "$dir/c$n/enabled_plugins"
        printf 'listeners.tcp.default = %s\n' $((5700 + n)) > "$dir/c$n/rabbitmq.conf"
    done
    # The Debian rabbitmq-server runs the node as the rabbitmq user (and its Erlang cookie).
    chown -R rabbitmq:rabbitmq "$dir"
    for n in "${nodes[@]}"; do
        ( node_env "$n"; rabbitmq-server -detached )
    done
    for n in "${nodes[@]}"; do
        for _ in $(seq 1 60); do ctl "$n" await_startup >/dev/null 2>&1 && break; sleep 1; done
    done
    for n in 2 3; do
        ctl "$n" stop_app
        ctl "$n" join_cluster warren-c1@localhost
        ctl "$n" start_app
    done
    ctl 1 cluster_status | head -20
    ;;
down)
    for n in "${nodes[@]}"; do ctl "$n" stop >/dev/null 2>&1 || true; done
    rm -rf "$dir"
    ;;
stop-node) ctl "$2" stop_app ;;
start-node) ctl "$2" start_app ;;
*) echo "usage: $0 up|down|stop-node N|start-node N" >&2; exit 2 ;;
esac
