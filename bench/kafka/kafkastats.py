"""librdkafka's statistics, reduced to how well a client batches: requests and messages.

A client configured with ``statistics.interval.ms`` hands its statistics JSON
to a callback during poll; :class:`Batching` keeps the latest one and reads
the counts out of it only when asked, so the service loop pays nothing per
message. The counts are cumulative since the client started.
"""
from __future__ import annotations

import json

INTERVAL_MS = 1000
COUNTS = ("produce_requests", "produced", "fetch_requests", "fetched")


class Batching:
    """Keeps the latest statistics of named clients (merge ``conf(name)`` into each client's config)."""

    def __init__(self) -> None:
        self.latest: dict[str, str] = {}  # client name -> its latest statistics JSON

    def conf(self, name: str) -> dict:
        # Kept as text: parsing waits until counts() is asked for.
        return {"statistics.interval.ms": INTERVAL_MS, "stats_cb": lambda stats: self.latest.__setitem__(name, stats)}

    def counts(self) -> dict[str, int]:
        """Produce and fetch requests sent and messages produced and fetched, over every client kept."""
        totals = dict.fromkeys(COUNTS, 0)
        for raw in self.latest.values():
            stats = json.loads(raw)
            for broker in stats.get("brokers", {}).values():
                req = broker.get("req", {})
                totals["produce_requests"] += req.get("Produce", 0)
                totals["fetch_requests"] += req.get("Fetch", 0)
            if stats.get("type") == "producer":
                totals["produced"] += stats.get("txmsgs", 0)
            else:
                totals["fetched"] += stats.get("rxmsgs", 0)
        return totals


def backlog(raw: str | None) -> int | None:
    """Messages on a consumer's assigned partitions that its application has not taken yet
    (fetched into librdkafka's queue or not fetched at all): the partitions' end offsets (last
    stable under read_committed) minus the application's position. Unlike log-end minus the
    committed offset, it does not count what was handled since the last commit. None before
    the consumer has reported statistics."""
    if raw is None:
        return None
    stats = json.loads(raw)
    total = 0
    for topic in stats.get("topics", {}).values():
        for part in topic.get("partitions", {}).values():
            if part.get("partition", -1) < 0 or not part.get("desired"):
                continue
            end = part.get("ls_offset", -1) if part.get("ls_offset", -1) >= 0 else part.get("hi_offset", -1)
            position = part.get("app_offset", -1)
            if position < 0:
                position = part.get("committed_offset", -1)
            if end >= 0 and position >= 0:
                total += max(0, end - position)
    return total


def ratios(counts: dict[str, int]) -> dict[str, float | None]:
    """Messages per produce request and per fetch request (None where no request was sent)."""
    per = lambda n, d: round(n / d, 2) if d else None
    return {"messages_per_produce_request": per(counts.get("produced", 0), counts.get("produce_requests", 0)),
            "messages_per_fetch": per(counts.get("fetched", 0), counts.get("fetch_requests", 0))}
