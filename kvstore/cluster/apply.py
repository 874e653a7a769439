"""``kvstore cluster apply``: make the running ring the config's membership.

The steps, the rules and the refusals are the operator's (``kvstore.cluster.operator``);
this module gives it the cluster over gRPC (``GrpcNodes``: each node's Admin service,
one blocking call at a time on a worker thread) and the local cluster's processes:
a new local node is started joining, a removed one is stopped once the change is done.
"""

from __future__ import annotations

import asyncio

import grpc
from rich.console import Console
from rich.progress import Progress, TaskID, TextColumn, TimeElapsedColumn

from kvstore.cluster.admin import SyncAdminClient
from kvstore.cluster.local import LocalCluster
from kvstore.cluster.operator import ApplyError, NodeCallFailed, Operator, PullStep
from kvstore.config import ClusterConfig
from kvstore.core.epochs import STABLE, Reply, Request, RingRecord
from kvstore.core.rebalance import PlanRefused, Stream
from kvstore.net.channel import Dialer
from kvstore.node.ring_store import configured_ring
from kvstore.pb import kvstore_pb2 as pb

console = Console()


def record_of(ring: pb.RingView) -> RingRecord | None:
    """The ring record a node reports (None: joining, it has none)."""
    if ring.epoch == 0:
        return None
    target = tuple((m.id, m.address) for m in ring.target) or None
    return RingRecord(
        ring.epoch,
        tuple((m.id, m.address) for m in ring.members),
        ring.n,
        ring.vnodes,
        target,
        ring.phase or STABLE,
    )


def _why(exc: grpc.RpcError) -> str:
    return exc.details() if isinstance(exc, grpc.Call) else str(exc)


class GrpcNodes:
    """``Nodes`` over each node's Admin service."""

    def __init__(self, addresses: dict[str, str], dialer: Dialer) -> None:
        self.addresses = dict(addresses)
        self.dialer = dialer

    def _admin(self, node: str) -> SyncAdminClient:
        if node not in self.addresses:
            raise NodeCallFailed(f"{node}: no address known")
        return SyncAdminClient.at(self.addresses[node], dialer=self.dialer, node_id=node)

    def read_ring(self, node: str) -> RingRecord | None:
        """``ring``, blocking (for the read-only ``cluster plan``)."""
        try:
            with self._admin(node) as admin:
                return record_of(admin.status(timeout=2.0).ring)
        except grpc.RpcError as exc:
            raise NodeCallFailed(_why(exc)) from None

    async def ring(self, node: str) -> RingRecord | None:
        return await asyncio.to_thread(self.read_ring, node)

    def _epoch(self, node: str, message: Request) -> Reply:
        try:
            with self._admin(node) as admin:
                return admin.epoch(message)
        except (grpc.RpcError, ValueError) as exc:
            raise NodeCallFailed(str(exc)) from None

    async def epoch(self, node: str, message: Request) -> Reply:
        return await asyncio.to_thread(self._epoch, node, message)

    def _pull(
        self,
        target: str,
        source: str,
        ranges: list[tuple[int, int]],
        after: bytes | None,
        rate_keys_s: float,
        budget_s: float,
    ) -> PullStep:
        try:
            with self._admin(target) as admin:
                got = admin.pull(source, ranges, after, rate_keys_s=rate_keys_s, budget_s=budget_s)
        except grpc.RpcError as exc:
            raise NodeCallFailed(_why(exc)) from None
        return PullStep(got.keys, got.stored, got.next if got.HasField("next") else None)

    async def pull(
        self,
        target: str,
        source: str,
        ranges: list[tuple[int, int]],
        after: bytes | None,
        rate_keys_s: float,
        budget_s: float,
    ) -> PullStep:
        return await asyncio.to_thread(
            self._pull, target, source, ranges, after, rate_keys_s, budget_s
        )

    def _clean_up(self, node: str) -> tuple[int, int]:
        try:
            with self._admin(node) as admin:
                got = admin.clean_up()
        except grpc.RpcError as exc:
            raise NodeCallFailed(_why(exc)) from None
        return got.scanned, got.dropped

    async def clean_up(self, node: str) -> tuple[int, int]:
        return await asyncio.to_thread(self._clean_up, node)

    def know(self, record: RingRecord) -> None:
        for m, a in record.everyone():
            self.addresses.setdefault(m, a)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def now(self) -> float:
        return asyncio.get_running_loop().time()


def run_apply(
    config: ClusterConfig,
    local: LocalCluster | None,
    dialer: Dialer,
    *,
    dead: list[str],
    rate_keys_s: float = 0.0,
    parallel: int = 1,
) -> int:
    """The CLI's entry: 0 done (or nothing to do), 1 refused or waiting on something."""
    desired = configured_ring(config)  # only its members, N and vnodes are used
    nodes = GrpcNodes({n.id: n.address for n in config.nodes}, dialer)
    bars = Progress(
        TextColumn("  {task.description}"), TextColumn("{task.completed} keys"),
        TextColumn("{task.fields[state]}"), TimeElapsedColumn(), console=console,
    )  # fmt: skip
    tasks: dict[Stream, TaskID] = {}

    def progress(stream: Stream, keys: int, done: bool) -> None:
        if stream not in tasks:
            name = f"{stream.source} -> {stream.target}"
            tasks[stream] = bars.add_task(name, total=None, state="streaming")
        bars.update(tasks[stream], completed=keys, state="done" if done else "streaming")

    operator = Operator(
        nodes,
        list(config.node_ids),
        frozenset(dead),
        rate_keys_s,
        console.print,
        parallel=parallel,
        progress=progress,
    )

    async def start_new(node: str) -> None:
        if local is None:
            return
        try:
            await nodes.ring(node)
        except NodeCallFailed:  # not running: a local node we start, joining
            console.print(f"starting {node} (joining)")
            await asyncio.to_thread(local.start_node, node, join=True)

    try:
        with bars:  # one live line per stream while it runs (plain lines when not a tty)
            final = asyncio.run(operator.run(desired, start_new))
    except (ApplyError, PlanRefused) as exc:
        console.print(f"[red]kvstore cluster apply: {exc}[/red]")
        return 1
    if local is not None:
        for node in list(local.nodes):
            if node not in final.ids and node not in dead:
                console.print(f"stopping {node}: no longer a member")
                local.stop_node(node)
    console.print(f"done: epoch {final.epoch}, {', '.join(final.ids)}")
    return 0
