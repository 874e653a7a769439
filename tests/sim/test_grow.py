"""A brand-new sixth machine joins a five-node simulated cluster under steady load.

The machine has an id and a disk the cluster never saw (``SimCluster.add_machine``) and
starts joining, as ``kvstore node --id n6 --join`` does; the membership operator
(``kvstore.cluster.operator``, the one ``kvstore cluster apply`` runs) takes the ring
through every epoch while four clients keep writing. Afterwards every acknowledged
write reads back at linearizable, and every node holds exactly the keys the final ring
gives it: the ones it owns, and not one it gave up (the epoch fence refuses any write
placed with a ring older than the clean-up's).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from kvstore.cluster.operator import Operator
from kvstore.core.epochs import RingRecord
from kvstore.core.ring import Ring
from kvstore.errors import KVError
from kvstore.sim import loop as sim_loop
from kvstore.sim.client import SimClient
from kvstore.sim.cluster import SimCluster
from kvstore.sim.membership import SimNodes
from kvstore.sim.run import sim_config

WORKERS = 4
STATIC = 300  # keys written before the change


def _grow(consistency: str, seed: int) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def main() -> None:
        cfg = sim_config()
        cluster = SimCluster(cfg, random.Random(seed))
        cluster.start()
        await asyncio.sleep(1.0)
        client = SimClient(cluster, list(cfg.node_ids), timeout=2.0, rng=random.Random(seed))
        acked: dict[str, bytes] = {}
        for i in range(STATIC):
            await client.put(f"s{i}", b"static", consistency=consistency)
            acked[f"s{i}"] = b"static"
        stop = asyncio.Event()

        async def load(worker: int) -> None:
            i = 0
            while not stop.is_set():
                key, value = f"w{worker}-{i}", str(i).encode()
                try:
                    await client.put(key, value, consistency=consistency)
                except KVError:
                    pass  # not acknowledged: nothing to check it by
                else:
                    acked[key] = value
                i += 1

        workers = [asyncio.create_task(load(w)) for w in range(WORKERS)]
        await asyncio.sleep(0.5)
        before = len(acked)
        node, address = cluster.add_machine()
        cluster.start_node(node, join=True)
        lines: list[str] = []
        operator = Operator(SimNodes(cluster), list(cfg.node_ids), say=lines.append)
        current = await operator.current()
        desired = RingRecord(1, (*current.members, (node, address)), current.n, current.vnodes)
        final = await operator.run(desired)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*workers)
        await asyncio.sleep(1.0)  # the last writes' copies beyond W land
        seen["node"], seen["epoch"], seen["members"] = node, final.epoch, final.ids
        seen["during"] = len(acked) - before
        lost = []
        for key, value in acked.items():
            if await client.get(key, consistency="linearizable") != value:
                lost.append(key)
        seen["lost"] = lost
        ring = Ring(final.ids, final.vnodes)
        wrong = []
        for member in final.ids:
            for key in acked:
                owns = member in ring.primaries(key.encode(), cfg.n)
                holds = await cluster.read_local(member, key.encode()) is not None
                if owns != holds:
                    wrong.append((member, key, "missing" if owns else "left behind"))
        seen["wrong"] = wrong
        seen["n6_holds"] = sum(
            [await cluster.read_local(node, k.encode()) is not None for k in acked]
        )

    sim_loop.run(main)
    return seen


@pytest.mark.parametrize("consistency", ["quorum", "linearizable"])
def test_a_brand_new_sixth_machine_joins_under_load(consistency: str) -> None:
    seen = _grow(consistency, 5)
    assert seen["node"] == "n6" and "n6" in seen["members"], seen
    assert seen["epoch"] == 5, seen  # write-both, read-new, clean-up, stable
    assert seen["during"] > 50, seen  # the load went on through the change
    assert seen["lost"] == [], seen["lost"][:10]
    assert seen["wrong"] == [], seen["wrong"][:10]
    assert seen["n6_holds"] > 0, seen
