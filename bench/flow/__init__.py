"""The order flow, the bottom layer: the saga's steps and every name derived from them,
the wire format, workloads and arrival schedules. Pure data and decisions: no Kafka, no
clock but the one events stamp, nothing that knows how a run is driven."""
