"""What a run leaves on disk and how it is read back: the result directory and its files,
the summary and its verdict, HDR histograms, per-step logs, series of runs. Shared by real
and simulated runs and read by `bench compare`, so it never loads the run stack or the
Kafka client (tests/unit/test_layers.py)."""
