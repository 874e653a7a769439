"""A local cluster of real node processes, driven by PID.

Rules and invariants:
- Every node is a separate OS process (``python -m kvstore node``) in its own session,
  with its log in ``<run_dir>/logs/<id>.log``; kill and pause are real signals.
- The state file ``<run_dir>/cluster.json`` names every PID this cluster started, so
  another process (``kvstore cluster down``) can stop them; before signalling a PID from
  the file, its command line is checked so a recycled PID is never signalled.
- ``stop`` always ends with no node process left: SIGTERM, a grace period, then SIGKILL
  (and SIGCONT first, since a paused process cannot handle SIGTERM).
- Readiness is a successful Admin.Status call, polled with a deadline, never a sleep.
- Secure by default: before the first node starts, whatever certificates the config's
  ``[tls]`` folder lacks are made (a CA, one per node, the admin client's), and every
  call this module makes dials as that admin client (``kvstore.cluster.admin``). Nodes
  get ``--enable-faults`` only when the cluster is made with ``enable_faults`` (tests
  and the harness).
- Nodes start with the environment ``kvstore.net.grpc_io`` gives a node process (the
  gRPC I/O stack, chosen before grpc is imported), the rest of the caller's kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc

from kvstore.cluster.admin import AdminClient, SyncAdminClient
from kvstore.config import ClusterConfig
from kvstore.net import grpc_io
from kvstore.net.channel import Dialer
from kvstore.pb import kvstore_pb2 as pb
from kvstore.security import certs
from kvstore.security.tls import TLSFiles

STATE_FILE = "cluster.json"


class ClusterError(RuntimeError):
    pass


@dataclass(slots=True)
class NodeProcess:
    node_id: str
    address: str
    pid: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def write_local_config(
    folder: Path,
    *,
    nodes: int = 5,
    name: str = "local",
    addresses: list[str] | None = None,
    metrics: bool = False,
    **cluster: object,
) -> Path:
    """Write ``folder/cluster.toml``: ``nodes`` nodes on free loopback ports (or on the
    ``addresses`` given), data dirs inside ``folder``, Prometheus endpoints on free
    loopback ports if ``metrics``, and any ``[cluster]`` fields given (validated when
    loaded)."""
    fields: dict[str, object] = {"name": name, "run_dir": "run", **cluster}
    lines = ["[cluster]"]
    for key, value in fields.items():
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        elif isinstance(value, str):
            rendered = f'"{value}"'
        else:
            rendered = str(value)
        lines.append(f"{key} = {rendered}")
    # One free_ports call for every port the file names: ports from two calls can repeat,
    # since the first call's sockets are closed before the second binds.
    count = nodes if addresses is None else len(addresses)
    ports = iter(free_ports((count if addresses is None else 0) + (count if metrics else 0)))
    if addresses is None:
        addresses = [f"127.0.0.1:{next(ports)}" for _ in range(count)]
    metrics_ports = list(ports)
    for i, address in enumerate(addresses, 1):
        lines += ["", "[[nodes]]", f'id = "n{i}"', f'address = "{address}"']
        lines.append(f'data_dir = "data/n{i}"')
        if metrics:
            lines.append(f'metrics = "127.0.0.1:{metrics_ports[i - 1]}"')
    path = Path(folder) / "cluster.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def ensure_certs(config: ClusterConfig) -> list[Path]:
    """Make what a local cluster's ``[tls]`` folder lacks (nothing with TLS off)."""
    tls = config.tls_config
    if not tls.enabled:
        return []
    nodes = [(node.id, node.host) for node in config.nodes]
    return certs.ensure_local(tls.certs_dir, config.name, nodes, tls.client)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def is_our_node(pid: int, node_id: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid_alive(pid)  # no /proc (not Linux): trust the state file
    return b"kvstore" in b" ".join(cmdline) and node_id.encode() in cmdline


class LocalCluster:
    def __init__(
        self,
        config: ClusterConfig,
        config_path: Path,
        *,
        run_dir: Path | None = None,
        python: str = sys.executable,
        command_prefix: Callable[[str], list[str]] | None = None,
        enable_faults: bool = False,
    ) -> None:
        self.enable_faults = enable_faults
        self._dialer: Dialer | None = None
        self.config = config
        self.config_path = Path(config_path).resolve()
        self.run_dir = Path(run_dir or config.run_dir)
        self.python = python
        self.command_prefix = command_prefix  # e.g. run each node in its own namespace
        self.nodes: dict[str, NodeProcess] = {}
        self.clock_offsets_ms: dict[str, int] = {}

    # ------------------------------------------------------------------ dialling

    @property
    def dialer(self) -> Dialer:
        """Dials as the config's client (admin), making missing certificates first."""
        if self._dialer is None:
            ensure_certs(self.config)
            self._dialer = Dialer.for_client(self.config)
        return self._dialer

    def dial_as(self, files: TLSFiles) -> None:
        """Dial as these files' holder instead of the config's client."""
        self._dialer = Dialer(files)

    def channel(self, node_id: str) -> grpc.Channel:
        """A blocking channel to one node, as the admin client."""
        return self.dialer.sync(self.config.node(node_id).address, node_id)

    def aio_channel(self, node_id: str) -> grpc.aio.Channel:
        return self.dialer.aio(self.config.node(node_id).address, node_id)

    def admin(self, node_id: str) -> AdminClient:
        """One node's Admin service (asyncio), as the admin client."""
        return AdminClient(self.config, node_id, dialer=self.dialer)

    def sync_admin(self, node_id: str) -> SyncAdminClient:
        """One node's Admin service (blocking), as the admin client."""
        return SyncAdminClient(self.config, node_id, dialer=self.dialer)

    def status(self, node_id: str, timeout: float = 1.0) -> pb.StatusReply:
        """One Admin.Status call (blocking); raises grpc.RpcError when the node is not up."""
        with self.sync_admin(node_id) as admin:
            return admin.status(timeout=timeout)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, *, timeout: float = 30.0) -> None:
        """Start every node that is not running and wait until all answer."""
        self.load_state()
        running = [n for n in self.nodes.values() if is_our_node(n.pid, n.node_id)]
        if running:
            names = ", ".join(f"{n.node_id} (pid {n.pid})" for n in running)
            raise ClusterError(
                f"cluster {self.config.name!r} is already running: {names}; "
                f"stop it with `kvstore cluster down` first"
            )
        _ = self.dialer  # certificates first: the nodes need theirs to start
        try:
            for node in self.config.nodes:
                self.start_node(node.id, wait=False)
            deadline = time.monotonic() + timeout
            self.wait_ready(timeout=timeout)
            self.wait_formed(timeout=max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise

    def start_node(
        self, node_id: str, *, wait: bool = True, timeout: float = 20.0, join: bool = False
    ) -> None:
        """Start one node; ``join``: it is new to the running cluster (``kvstore node
        --join``), so it learns the ring instead of starting one."""
        node = self.config.node(node_id)
        current = self.nodes.get(node_id)
        if current is not None and pid_alive(current.pid):
            raise ClusterError(f"node {node_id} is already running (pid {current.pid})")
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{node_id}.log"
        args = [
            self.python,
            "-m",
            "kvstore",
            "node",
            "--id",
            node_id,
            "--config",
            str(self.config_path),
        ]
        if self.command_prefix is not None:
            args = self.command_prefix(node_id) + args
        if self.enable_faults:
            args.append("--enable-faults")
        if join:
            args.append("--join")
        offset = self.clock_offsets_ms.get(node_id)
        if offset:
            args += ["--clock-offset-ms", str(offset)]
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in the shell must not kill the cluster
                env=grpc_io.node_environment(os.environ),  # so no node needs to exec again
            )
        self.nodes[node_id] = NodeProcess(node_id, node.address, popen.pid, log_path, popen)
        self.save_state()
        if wait:
            self.wait_ready([node_id], timeout=timeout)

    def wait_ready(self, node_ids: list[str] | None = None, *, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(node_ids or self.nodes)
        while waiting:
            node_id = waiting[0]
            proc = self.nodes[node_id]
            if not pid_alive(proc.pid):
                raise ClusterError(
                    f"node {node_id} exited while starting; its log says:\n{self.tail(node_id)}"
                )
            try:
                self.status(node_id, timeout=0.5)
                waiting.pop(0)
                continue
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"node {node_id} did not answer within {timeout:.0f} s; "
                    f"its log says:\n{self.tail(node_id)}"
                )
            time.sleep(0.05)

    def wait_formed(self, *, timeout: float = 30.0) -> None:
        """Until every node has heard from every peer since it started.

        A node answering Status is not yet a cluster: its links to peers that started
        after it are still backing off, and a call at a strict level made then fails for
        want of replicas. Heard means a peer's reply came back over the replica stream.
        """
        deadline = time.monotonic() + timeout
        while True:
            unheard = []
            for node_id in self.nodes:
                with contextlib.suppress(grpc.RpcError):
                    peers = self.status(node_id, timeout=0.5).peers
                    unheard += [f"{node_id}->{p.node}" for p in peers if not p.heard]
                    continue
                unheard.append(f"{node_id} (no status)")
            if not unheard:
                return
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"the nodes did not all hear from each other within {timeout:.0f} s: "
                    f"still waiting on {', '.join(unheard)}"
                )
            time.sleep(0.05)

    def tail(self, node_id: str, lines: int = 15) -> str:
        try:
            text = self.nodes[node_id].log.read_text(errors="replace")
        except (OSError, KeyError):
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------- signals

    def signal(self, node_id: str, sig: signal.Signals) -> None:
        proc = self.nodes[node_id]
        if not is_our_node(proc.pid, node_id):
            raise ClusterError(f"node {node_id} (pid {proc.pid}) is not running")
        os.kill(proc.pid, sig)

    def kill(self, node_id: str) -> None:
        """SIGKILL: a crash. The node's process is reaped before this returns."""
        self.signal(node_id, signal.SIGKILL)
        self._reap(node_id, timeout=10.0)

    def pause(self, node_id: str) -> None:
        self.signal(node_id, signal.SIGSTOP)

    def resume(self, node_id: str) -> None:
        self.signal(node_id, signal.SIGCONT)

    def restart(self, node_id: str, *, timeout: float = 20.0) -> None:
        if pid_alive(self.nodes[node_id].pid):
            self.stop_node(node_id)
        self.start_node(node_id, timeout=timeout)

    def stop_node(self, node_id: str, *, grace: float = 5.0) -> None:
        proc = self.nodes.get(node_id)
        if proc is None or not is_our_node(proc.pid, node_id):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGTERM)
        if not self._reap(node_id, timeout=grace):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            self._reap(node_id, timeout=10.0)

    def stop(self) -> None:
        """Stop every node this cluster knows of; safe to call twice or on a dead cluster.

        All nodes get SIGTERM at once (they then shut down in parallel), and any node
        still running after the grace period gets SIGKILL.
        """
        live = [n for n in self.nodes.values() if is_our_node(n.pid, n.node_id)]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
                os.kill(proc.pid, signal.SIGTERM)
        for proc in live:
            if not self._reap(proc.node_id, timeout=5.0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                self._reap(proc.node_id, timeout=10.0)
        self.save_state()

    def _reap(self, node_id: str, timeout: float) -> bool:
        proc = self.nodes[node_id]
        if proc.popen is not None:
            try:
                proc.popen.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        deadline = time.monotonic() + timeout
        while pid_alive(proc.pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    # --------------------------------------------------------------------- state

    @property
    def state_path(self) -> Path:
        return self.run_dir / STATE_FILE

    def save_state(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "cluster": self.config.name,
            "config": str(self.config_path),
            "nodes": {
                n.node_id: {"pid": n.pid, "address": n.address, "log": str(n.log)}
                for n in self.nodes.values()
            },
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_path)

    def load_state(self) -> None:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return
        for node_id, info in state.get("nodes", {}).items():
            if node_id not in self.nodes:
                self.nodes[node_id] = NodeProcess(
                    node_id, info["address"], int(info["pid"]), Path(info["log"])
                )
