"""`bench agent`: run the service instances a run's coordinator places on this host."""
from __future__ import annotations

import threading
from pathlib import Path

import click

from bench.run import agent as host_agent
from bench.run import control


@click.command()
@click.option("--listen", required=True, metavar="ADDRESS:PORT",
              help="Where to listen for the coordinator, e.g. 10.0.0.2:7070 (no default: say which network).")
@click.option("--secret-file", type=click.Path(path_type=Path), default=None,
              help=f"The run's shared secret (first line; else ${control.SECRET_ENV}). Never give it as an argument.")
@click.option("--kafka-config", type=click.Path(path_type=Path), default=None,
              help="librdkafka properties for this host's services (credentials stay on this host).")
@click.option("--work-dir", type=click.Path(path_type=Path), default=None,
              help="Where hosted runs keep their workload and logs (default: <tmp>/bench-agent).")
def agent(listen, secret_file, kafka_config, work_dir) -> None:
    """Start and stop this host's service instances when a run's coordinator asks (`bench run --hosts`)."""
    from bench import inputs
    from bench.kafka import clients

    address = host_agent.parse_listen(listen)
    secret = control.read_secret(secret_file)
    if kafka_config:
        clients.read_properties(kafka_config)  # checked now, not when the first service starts
    work_dir = work_dir or host_agent.default_work_dir()
    inputs.check_output_dir(work_dir, "--work-dir", must_be_empty=False)
    hosted = host_agent.Agent(secret, work_dir, kafka_config)

    def ready(bound) -> None:
        click.echo(f"bench agent listening on {bound[0]}:{bound[1]}", err=True)

    try:
        host_agent.serve(address, hosted, ready, threading.Event())
    except KeyboardInterrupt:
        click.echo("bench agent: stopped (its hosted run, if any, ended)", err=True)
