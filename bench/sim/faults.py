"""The workload's ``faults:`` in the model, one small function per fault type (an explicit registry).

What each costs follows the real mechanisms: a killed instance's partitions wait
until the group coordinator notices (``session_timeout_s``) and rebalances
(``rebalance_s``, during which the whole group consumes nothing, as in an eager
rebalance); what it had handled since its last offset commit is handled again by
the next owner; a restarted orchestrator resumes its sagas from the saga-state
topic. A dead broker's partitions are unavailable until a follower is elected
(``failover_s``) or, without replicas, until it is back.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator

from bench.flow import events as ev
from bench.flow.workload import Fault

DEFAULT_POISON = 10
DEFAULT_DUPLICATES = 100


def schedule(world, faults: tuple[Fault, ...]) -> list:
    if any(f.type == "duplicate" for f in faults):
        world.cluster.recent = {}
    return [world.env.process(FAULTS[f.type](world, f)) for f in faults]


def _target(world, fault: Fault):
    role = fault.role
    if role not in world.instances:
        raise ValueError(f"fault {fault.type} at {fault.at_s:g}s: {world.scenario.pattern.name} has no role {role!r}")
    return role, fault.instance or 0


def _give_back(group, back: list) -> None:
    """Messages a crashed member had not committed go back in front of what waits on their partitions."""
    merged: dict = {}
    for topic, partition, msgs in back:
        merged.setdefault((topic, partition), []).extend(msgs)
    for key, msgs in merged.items():
        group.held[key] = msgs + group.held.get(key, [])


def kill(world, fault: Fault) -> Generator:
    env, profile = world.env, world.scenario.profile
    yield env.timeout(fault.at_s)
    role, index = _target(world, fault)
    group, old = world.groups[role], world.instances[role][index]
    if not old.alive:
        return
    _give_back(group, old.crash())
    group.members.remove(old)
    group.owner = [None if owner is old else owner for owner in group.owner]
    detected_at = env.now + profile.session_timeout_s
    if group.members:
        env.timeout(profile.session_timeout_s).callbacks.append(lambda _e: group.rebalance(profile.rebalance_s))
    yield env.timeout((fault.duration_s or 0.0) + profile.startup_s)
    world.retired.setdefault(role, []).append(old)  # what it handled and sent still counts in the results
    new = world.instances[role][index] = world.new_instance(role, index, replays=True)
    # The coordinator admits the new member once the dead one's session has expired.
    yield env.timeout(max(0.0, detected_at - env.now))
    group.rebalance(profile.rebalance_s, joining=new)


def pause(world, fault: Fault) -> Generator:
    env, profile = world.env, world.scenario.profile
    yield env.timeout(fault.at_s)
    role, index = _target(world, fault)
    group, instance = world.groups[role], world.instances[role][index]
    duration = fault.duration_s or 0.0
    instance.stalled_until = env.now + duration
    if duration < profile.session_timeout_s:
        return  # back before anyone noticed: only its own partitions waited
    yield env.timeout(profile.session_timeout_s)
    group.rebalance(profile.rebalance_s, leaving=instance)
    yield env.timeout(max(0.0, instance.stalled_until - env.now))
    group.rebalance(profile.rebalance_s, joining=instance)


def slow(world, fault: Fault) -> Generator:
    env = world.env
    yield env.timeout(fault.at_s)
    role, _ = _target(world, fault)
    slowed = [i for i in world.instances[role] if fault.instance is None or i.index == fault.instance]
    for instance in slowed:
        instance.slow_s = fault.delay_s or 0.0
    yield env.timeout(fault.duration_s or 0.0)
    for instance in slowed:
        instance.slow_s = 0.0


def poison(world, fault: Fault) -> Generator:
    env, cluster = world.env, world.cluster
    yield env.timeout(fault.at_s)
    topic = fault.topic or ev.ORDER_CREATED
    for i in range(fault.count or DEFAULT_POISON):
        cluster.arrive(topic, i % cluster.partitions, [(None, env.now)])


def duplicate(world, fault: Fault) -> Generator:
    env, cluster = world.env, world.cluster
    yield env.timeout(fault.at_s)
    topic = fault.topic or ev.ORDER_CREATED
    recent = cluster.recent.get(topic, deque())
    count = min(fault.count or DEFAULT_DUPLICATES, len(recent))
    for partition, msg in list(recent)[len(recent) - count:]:
        cluster.arrive(topic, partition, [msg])


def broker_kill(world, fault: Fault) -> Generator:
    env, profile, cluster = world.env, world.scenario.profile, world.cluster
    yield env.timeout(fault.at_s)
    # Node ids count from 1, as the embedded cluster's; by default the leader of the topic's partition 0.
    broker = (fault.instance - 1 if fault.instance is not None else cluster.leader(0)) % len(cluster.brokers)
    if world.scenario.workload.replication_factor > 1:
        outage = profile.failover_s
    else:
        outage = (fault.duration_s or 0.0) + profile.startup_s
    cluster.down_until[broker] = env.now + outage


FAULTS: dict[str, Callable[..., Generator]] = {
    "kill": kill,
    "pause": pause,
    "slow": slow,
    "poison": poison,
    "duplicate": duplicate,
    "broker-kill": broker_kill,
}
