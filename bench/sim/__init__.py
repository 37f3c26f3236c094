"""`bench simulate`: a SimPy discrete-event model of both saga patterns.

The model drives the *same* pattern handlers as the real runtime
(:mod:`bench.patterns`) through a simulated transport: producers that batch
per partition for ``linger.ms``, a broker whose appends reach consumers after a
delay drawn from a distribution measured on a real broker (:mod:`bench.sim.profile`),
consumer groups whose instances process their fetched messages one at a time,
and hosts whose cores the processes share. It writes the same result directory
as ``bench run``.

Modules: :mod:`~bench.sim.profile` (what calibration measured),
:mod:`~bench.sim.kafka` (partitions, producers, consumer groups),
:mod:`~bench.sim.hosts` (CPU shared by the processes of one machine),
:mod:`~bench.sim.service` (one service instance and the outbox seam),
:mod:`~bench.sim.load` (open-loop load and the terminal consumer),
:mod:`~bench.sim.faults`, :mod:`~bench.sim.model` (wiring and the run),
:mod:`~bench.sim.output` (the result directory), :mod:`~bench.sim.calibrate`,
:mod:`~bench.sim.validate`.
"""
