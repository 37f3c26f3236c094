"""`bench serve`: one service instance, standalone against any cluster."""
from __future__ import annotations

import click

from bench.kafka import clients
from bench import patterns
from bench.run import runtime, supervisor
from bench.cli.options import Ranged, bootstrap_option, kafka_config_option, workload_option


@click.command()
@click.option("--pattern", type=click.Choice(sorted(patterns.PATTERNS)), required=True)
@click.option("--role", required=True, help="A step of the workload's saga, or the coordinator: "
              + " or ".join(f"{p.coordinator} ({p.name})" for p in patterns.PATTERNS.values()) + ".")
@click.option("--instance", type=Ranged("instance"), default=0, show_default=True, help="Instance number (names the client).")
@click.option("--group-prefix", default="bench", show_default=True, help="Consumer groups are <prefix>-<pattern>-<role>.")
@bootstrap_option(required=True)
@kafka_config_option
@workload_option
def serve(pattern, role, instance, group_prefix, bootstrap_servers, kafka_config, workload) -> None:
    """Run one instance of a service role until SIGTERM or Ctrl-C.

    Start several instances of a role (on any hosts) and Kafka spreads the
    partitions over them: they form one consumer group.
    """
    parent_alive = supervisor.parent_watch()
    chosen = patterns.get(pattern)
    roles = chosen.topology(workload.saga).roles
    if role not in roles:
        raise click.BadParameter(f"{pattern} has roles {', '.join(roles)} for this workload's saga", param_hint="--role")
    extra = clients.read_properties(kafka_config) if kafka_config else {}
    # librdkafka reads the whole client configuration first, as `bench run` has it: one line, exit 2.
    clients.check(workload, extra, str(kafka_config or workload.source or "the workload's client settings"))
    spec = runtime.ServiceSpec(chosen, role, instance, bootstrap_servers, workload, group_prefix, extra)
    runtime.serve(spec, parent_alive, supervised=supervisor.supervised())
