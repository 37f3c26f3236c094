"""A run on a real cluster: the service runtime and the processes that host it, the
open-loop load generator, injected faults, the audit, cost, and the run, series and sweep
that drive them. Writes its results through :mod:`bench.results`."""
