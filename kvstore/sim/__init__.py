"""The simulator: the whole cluster in one process on virtual time.

The same ``Node`` that serves gRPC in production runs here; what differs is injected at
its seams: the transport (``sim.network``: an in-memory network with latencies, drops,
duplicates and partitions), the clock (``sim.world``: virtual time plus per-node skew),
storage (``sim.disk``: a memory disk that models fsync, so a crash loses exactly what
was not synced) and randomness (one seeded generator per run). ``sim.loop`` is the
deterministic event loop everything runs on: one seed, one schedule, one history.
"""
