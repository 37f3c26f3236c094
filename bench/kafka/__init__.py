"""Talking to any Kafka cluster: client settings and their secrets, topics, reading
records back, librdkafka's statistics, and the error a cluster raises. Builds on the flow
(topic names, workloads); knows nothing of patterns, runs or results."""
