"""`bench broker ...`: the embedded Kafka."""
from __future__ import annotations

import time

import click

from bench.broker import dist, embedded, warmup
from bench.cli.options import Ranged


@click.group()
def broker() -> None:
    """Fetch, start and stop the embedded Apache Kafka (KRaft) on loopback."""


@broker.command()
def install() -> None:
    """Fetch Kafka's jars from Maven Central into the per-user cache."""
    started = time.monotonic()
    lib = dist.install()
    click.echo(f"Kafka {dist.KAFKA_VERSION} ready in {lib} ({time.monotonic() - started:.1f}s)")


@broker.command()
@click.option("--nodes", type=click.Choice(["1", "3"]), default="1", show_default=True, help="KRaft nodes (3 for replication-factor-3 failure tests).")
@click.option("--port", type=Ranged("port"), default=None,
              help="Client port of node 1; node i uses port+i-1 (default: $BENCH_BROKER_PORT, else 9092).")
@click.option("--warm-up/--no-warm-up", default=True, show_default=True,
              help="Send the new JVM a discarded pre-load (about 6 s) so runs do not measure its JIT compiler.")
def start(nodes: str, port: int, warm_up: bool) -> None:
    """Start a fresh cluster in the background and wait until it serves requests."""
    started = time.monotonic()
    cluster = embedded.start(nodes=int(nodes), port=port or embedded.default_port())
    click.echo(f"Kafka {dist.KAFKA_VERSION} ({len(cluster.nodes)} node{'s' if len(cluster.nodes) > 1 else ''}) "
               f"serving in {time.monotonic() - started:.1f}s")
    if warm_up:
        started = time.monotonic()
        sent = warmup.warm_up(cluster.bootstrap_servers)
        click.echo(f"warmed up: {sent} messages in small requests, {time.monotonic() - started:.1f}s, discarded")
    click.echo(cluster.bootstrap_servers)


@broker.command()
def stop() -> None:
    """Stop the embedded cluster (no Kafka JVM of ours is left)."""
    cluster = embedded.stop()
    click.echo("no bench broker is running" if cluster is None else f"stopped {cluster.bootstrap_servers}")


@broker.command()
def status() -> None:
    """Show whether the embedded cluster runs, its address and memory."""
    cluster = embedded.running()
    if cluster is None:
        click.echo("not running")
        return
    rss = embedded.rss_mb(cluster)
    for node in cluster.nodes:
        state = f"pid {node.pid}, RSS {rss[node.node_id]:.0f} MiB" if node.node_id in rss else "down"
        click.echo(f"node {node.node_id}: localhost:{node.port} {state}")
    click.echo(cluster.bootstrap_servers)


@broker.command()
@click.option("--node", type=Ranged("node"), default=1, show_default=True)
@click.option("-n", "--lines", type=Ranged("lines"), default=40, show_default=True)
def logs(node: int, lines: int) -> None:
    """Print the last lines of a node's server.log."""
    cluster = embedded.Cluster.load()
    if cluster is None:
        raise click.ClickException("no bench broker has been started: `bench broker start`")
    if node not in {n.node_id for n in cluster.nodes}:
        raise click.BadParameter(f"the cluster has nodes {', '.join(str(n.node_id) for n in cluster.nodes)}", param_hint="--node")
    path = cluster.node(node).log_path
    click.echo(f"==> {path}")
    click.echo("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
