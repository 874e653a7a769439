"""Client workers: run the workload against the cluster and record every operation.

Rules (Jepsen's):
- Every op is recorded as an ``invoke`` before it is sent and a completion after, with
  times from the recorder's single monotonic clock.
- Completions follow the error taxonomy: success ``ok``; a definite error ``fail``; an
  indefinite error ``info`` (the write may or may not have happened). A failed read
  has no effect, so it is always ``fail``.
- A process that got ``info`` may still have that op in flight, so the worker carries
  on under a fresh process id (old id + concurrency), as Jepsen does.
- The whole client side is paced to ``rate`` ops/s, spread over the workers.
- Each process talks to one node, process ``p`` to node ``p mod nodes`` (as Jepsen
  binds its clients), so different processes see the cluster through different
  coordinators; the node is recorded with every event.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kvstore.client import Client
from kvstore.errors import KVError
from kvstore.harness.recorder import Recorder
from kvstore.harness.workload import Op, RegisterWorkload

FINAL_PROCESS = 1_000_000  # process ids of the settle phase's final reads start here


@dataclass(frozen=True, slots=True)
class Options:
    """Client options for the reads and for the writes of a run."""

    reads: dict[str, Any]
    writes: dict[str, Any]


@dataclass(slots=True)
class Tally:
    ops: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies: list[tuple[float, float, str, str]] = field(default_factory=list)
    # (start s since t0, latency s, f, outcome)


async def run_op(
    client: Client,
    op: Op,
    process: int,
    recorder: Recorder,
    options: Options,
    timeout: float,
    node: str = "",
) -> str:
    """Run one op and record it; returns the completion type."""
    where = {"node": node} if node else None
    recorder.record(process, "invoke", op.f, key=op.key, value=op.value, extra=where)
    try:
        if op.f == "read":
            raw = await client.get(op.key, timeout=timeout, **options.reads)
            value = None if raw is None else int(raw)
            recorder.record(process, "ok", op.f, key=op.key, value=value, extra=where)
            return "ok"
        if op.f == "delete":
            await client.delete(op.key, timeout=timeout, **options.writes)
        else:
            await client.put(op.key, str(op.value), timeout=timeout, **options.writes)
        recorder.record(process, "ok", op.f, key=op.key, value=op.value, extra=where)
        return "ok"
    except KVError as exc:
        kind = "fail" if exc.definite or op.f == "read" else "info"
        error = f"{type(exc).__name__}: {exc.message}"
    except Exception as exc:  # anything unexpected may have happened: indefinite
        kind = "fail" if op.f == "read" else "info"
        error = f"{type(exc).__name__}: {exc}"
    recorder.record(process, kind, op.f, key=op.key, value=op.value, error=error, extra=where)
    return kind


async def run_workers(
    clients: list[tuple[str, Client]],
    workload: RegisterWorkload,
    recorder: Recorder,
    *,
    concurrency: int,
    rate: float,
    seconds: float,
    options: Options,
    op_timeout: float,
    tally: Tally,
    stagger: random.Random | None = None,
) -> None:
    clock = asyncio.get_running_loop().time  # virtual time in the simulator
    start = clock()
    stop_at = start + seconds
    issued = 0

    async def worker(process: int) -> None:
        nonlocal issued
        while True:
            # global pacing: op number i may start at start + i / rate
            slot = issued
            issued += 1
            due = start + slot / rate
            if stagger is not None:  # see RunOptions.stagger
                due += (stagger.random() - 0.5) / rate
            if due >= stop_at or clock() >= stop_at:
                return
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            op = workload.next_op()
            began = clock()
            node, client = clients[process % len(clients)]
            outcome = await run_op(client, op, process, recorder, options, op_timeout, node)
            tally.ops += 1
            tally.outcomes[outcome] += 1
            tally.latencies.append((began - start, clock() - began, op.f, outcome))
            if outcome == "info":
                process += concurrency

    await asyncio.gather(*(worker(p) for p in range(concurrency)))
