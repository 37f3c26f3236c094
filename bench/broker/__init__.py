"""The embedded Apache Kafka broker: fetch, start, stop, and Kafka's own CLI tools."""
