#!/bin/sh
# The image's entrypoint (Dockerfile). Without arguments the container is an agent, configured from
# its environment as Kubernetes and docker compose configure containers; with arguments, they are
# a bench command, run as given (`run --hosts ...` for a run's coordinator, `--help`).
#
#   BENCH_AGENT_LISTEN       where the agent listens; default 0.0.0.0:7070, every address of this
#                            container: its network (a pod's, a compose network) decides who reaches it
#   BENCH_AGENT_SECRET_FILE  the run's shared secret, as a file (a mounted Secret); or else
#   BENCH_AGENT_SECRET       the secret itself (the agent takes it out of its environment)
#   BENCH_AGENT_WORK_DIR     where hosted runs keep their workload and logs (default: bench's)
#   BENCH_KAFKA_CONFIG       librdkafka properties (SASL/SSL) for this host's services, if any
#
# The secret never becomes an argument: arguments are visible to every process (ps, /proc).
set -eu

if [ "$#" -gt 0 ]; then
    exec bench "$@"
fi

set -- agent --listen "${BENCH_AGENT_LISTEN:-0.0.0.0:7070}"
if [ -n "${BENCH_AGENT_SECRET_FILE:-}" ]; then
    set -- "$@" --secret-file "$BENCH_AGENT_SECRET_FILE"
    unset BENCH_AGENT_SECRET  # the file is the secret; the services need neither
fi
if [ -n "${BENCH_AGENT_WORK_DIR:-}" ]; then
    set -- "$@" --work-dir "$BENCH_AGENT_WORK_DIR"
fi
if [ -n "${BENCH_KAFKA_CONFIG:-}" ]; then
    set -- "$@" --kafka-config "$BENCH_KAFKA_CONFIG"
fi
exec bench "$@"
