"""`bench calibrate`: measure the real broker and machine for the model."""
from __future__ import annotations

from pathlib import Path

import click

from bench import inputs
from bench.broker import embedded
from bench.cli.errors import InputError
from bench.cli.options import bootstrap_option, kafka_config_option, workload_option
from bench.sim.calibrate import CalibrationRequest, calibrate as run_calibration, with_replication
from bench.sim.fit import fit_all, reference
from bench.sim.profile import ProfileError, load_profile, save_profile


@click.command()
@bootstrap_option()
@kafka_config_option
@workload_option
@click.option("--output", type=click.Path(path_type=Path), default=Path("profile.json"),
              show_default=True, help="Where to write the profile JSON.")
@click.option("--quick", is_flag=True, help="A few seconds per phase instead of a minute or two (rougher).")
@click.option("--reference", "references", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A real result dir to fit the model to (repeatable): the services' CPU per request and at rest, "
                   "the wait for cores, the broker's CPU. Give runs at several rates, each one that held its rate.")
@click.option("--replication", "replication_", is_flag=True,
              help="Also measure replication (acks=all against acks=1, replication factor 3) and the network round "
                   "trip to the brokers, for --brokers and --placement spread; needs a cluster of 3 or more brokers.")
@click.option("--from-profile", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Skip the measurements: start from this profile (to refit it with --reference).")
def calibrate(bootstrap_servers, kafka_config, workload, output, quick, references, replication_, from_profile) -> None:
    """Measure per-hop latency, service cost and rebalance pause on a real broker.

    Recreates the patterns' topics (as `bench run` does), starts service
    processes briefly, and writes a profile for `bench simulate --profile`.
    """
    echo = lambda line: click.echo(line, err=True)
    _check_output(output)
    refs = [reference(r) for r in references]
    profile = load_profile(from_profile) if from_profile else None
    if profile is None or replication_:
        if not bootstrap_servers:
            cluster = embedded.running()
            if cluster is None:
                raise InputError("no --bootstrap-servers and no embedded broker running: `bench broker start` first")
            bootstrap_servers = cluster.bootstrap_servers
        request = CalibrationRequest(workload, bootstrap_servers, Path(kafka_config) if kafka_config else None, quick)
        if profile is None:
            profile = run_calibration(request, echo)
        if replication_:
            profile = with_replication(profile, request, echo)
    if refs:
        profile = fit_all(profile, refs, echo)
        echo(f"contention_us = {profile.contention_us:g}")
    click.echo(f"profile: {save_profile(profile, output)}")


def _check_output(output: Path) -> None:
    """A profile is a .json file, and never replaces a file that is not an earlier profile
    (`--output results/x/summary.json` would overwrite a run's summary)."""
    if output.suffix.lower() != ".json":
        raise InputError(f"--output {output}: a profile is a .json file; name one, e.g. {output.with_suffix('.json')}")
    if inputs.check_output_file(output, "--output", InputError):
        try:
            load_profile(output)
        except ProfileError:
            raise InputError(f"--output {output}: the file exists and is not a bench profile; choose another path") from None
