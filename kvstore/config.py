"""Cluster configuration: ``cluster.toml`` loaded, validated and frozen.

Rules:
- Every problem raises ``ConfigError`` whose message names the file, the field (as a
  dotted path, e.g. ``nodes[2].address``) and what is wrong; nothing half-loaded escapes.
- Relative paths (data dirs, run dir) are resolved against the config file's folder, so
  a cluster behaves the same whatever the current directory is.
- Consistency defaults are validated against N here, so a node never starts with an
  impossible default (R > N).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kvstore.core.consistency import READ_REPAIR_MODES, resolve_count
from kvstore.errors import ConfigError, InvalidArgument

ENGINES = ("sqlite", "memory")
TLS_MODES = ("on", "off")


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Where a cluster's certificates live (``kvstore.security.certs`` names the files).

    ``enabled`` False is the explicit, loudly logged opt-out (``tls = "off"``): plaintext,
    no identities, every caller may do everything.
    """

    enabled: bool
    certs_dir: Path
    client: str = "admin"  # the client certificate the CLI and Client.from_config use


@dataclass(frozen=True, slots=True)
class NodeConfig:
    id: str
    host: str
    port: int
    data_dir: Path
    # HOST:PORT of the node's Prometheus endpoint (plain HTTP, read-only figures);
    # None: the node serves no metrics
    metrics: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    name: str
    n: int
    r: int
    w: int
    vnodes: int
    sloppy: bool
    read_repair: str
    request_timeout_ms: int
    max_key_bytes: int
    max_value_bytes: int
    engine: str
    run_dir: Path
    nodes: tuple[NodeConfig, ...]
    # failure detection and hinted handoff
    heartbeat_interval_ms: int = 200
    failure_detection_ms: int = 1500
    hint_replay_rate: int = 2000  # hints/s per node
    hint_window_s: float = 3 * 3600.0
    read_repair_wait_ms: int = 10  # how long a repairing read waits for replies beyond R
    # A read at R < N first asks R replicas (the coordinator's own first) and the rest only
    # when one of those fails or they have not all answered after this long; 0: ask all.
    speculative_read_ms: int = 30
    # the SQLite engine's cache of committed records (hot reads skip its reader thread)
    read_cache_mb: int = 16
    # anti-entropy and tombstones (run repair within the grace period, or deletes can return)
    anti_entropy_interval_s: float = 0.0  # 0: no scheduled rounds (on demand only)
    tombstone_grace_s: float = 10 * 86400.0
    # the trust boundary: certificates, clock drift a peer may show, bounds on held work
    tls: TLSConfig | None = None  # None: on, in <run_dir>/certs (see ``tls_config``)
    max_clock_drift_ms: int = 12_000
    max_timeout_ms: int = 60_000
    max_inflight_calls: int = 4096  # calls one node coordinates at once
    max_session_calls: int = 1024  # calls in flight on one client session
    max_peer_pending: int = 8192  # unanswered requests on one peer link
    source: Path | None = field(default=None, compare=False)

    @property
    def tls_config(self) -> TLSConfig:
        return self.tls or TLSConfig(True, self.run_dir / "certs")

    def node(self, node_id: str) -> NodeConfig:
        for node in self.nodes:
            if node.id == node_id:
                return node
        known = ", ".join(n.id for n in self.nodes)
        raise ConfigError(f"unknown node id {node_id!r} (the config has: {known})")

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(n.id for n in self.nodes)

    def with_nodes(self, nodes: tuple[NodeConfig, ...]) -> ClusterConfig:
        return replace(self, nodes=nodes)


_CLUSTER_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "n": int,
    "r": (int, str),
    "w": (int, str),
    "vnodes": int,
    "sloppy": bool,
    "read_repair": str,
    "request_timeout_ms": int,
    "max_key_bytes": int,
    "max_value_bytes": int,
    "engine": str,
    "run_dir": str,
    "heartbeat_interval_ms": int,
    "failure_detection_ms": int,
    "hint_replay_rate": int,
    "hint_window_s": (int, float),
    "read_repair_wait_ms": int,
    "speculative_read_ms": int,
    "read_cache_mb": int,
    "anti_entropy_interval_s": (int, float),
    "tombstone_grace_s": (int, float),
    "max_clock_drift_ms": int,
    "max_timeout_ms": int,
    "max_inflight_calls": int,
    "max_session_calls": int,
    "max_peer_pending": int,
}
_TLS_KEYS: dict[str, type] = {"mode": str, "certs_dir": str, "client": str}
_NODE_KEYS: dict[str, type] = {"id": str, "address": str, "data_dir": str}
_OPTIONAL_NODE_KEYS: dict[str, type] = {"metrics": str}


def load(path: str | Path) -> ClusterConfig:
    """Read and validate a cluster config file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(raw, base=path.resolve().parent, source=path)


def parse(raw: dict[str, Any], *, base: Path, source: Path | None = None) -> ClusterConfig:
    """Validate an already-decoded config mapping; paths resolve against ``base``."""
    where = str(source) if source else "config"

    def fail(field_name: str, problem: str) -> ConfigError:
        return ConfigError(f"{where}: {field_name}: {problem}")

    unknown_top = set(raw) - {"cluster", "nodes", "tls"}
    if unknown_top:
        raise fail(
            sorted(unknown_top)[0], "unknown section (expected [cluster], [tls] and [[nodes]])"
        )
    cluster = raw.get("cluster")
    if not isinstance(cluster, dict):
        raise fail("cluster", "missing [cluster] table")
    for key, value in cluster.items():
        expected = _CLUSTER_KEYS.get(key)
        if expected is None:
            raise fail(f"cluster.{key}", "unknown field")
        if isinstance(value, bool) and expected is not bool:
            raise fail(f"cluster.{key}", f"expected {_type_name(expected)}, got a boolean")
        if not isinstance(value, expected):
            raise fail(
                f"cluster.{key}", f"expected {_type_name(expected)}, got {type(value).__name__}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            # TOML allows inf and nan; nan slips through every comparison below.
            raise fail(
                f"cluster.{key}", f"{value} is not a finite number (inf and nan are refused)"
            )

    name = cluster.get("name", "kvstore")
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise fail("cluster.name", f"{name!r} must be non-empty letters, digits, - or _")

    nodes_raw = raw.get("nodes")
    if not isinstance(nodes_raw, list) or not nodes_raw:
        raise fail("nodes", "missing: add one [[nodes]] table per node")
    nodes: list[NodeConfig] = []
    seen_ids: set[str] = set()
    seen_addrs: set[str] = set()
    seen_dirs: list[tuple[str, Path]] = []  # (label, resolved data dir)
    for i, node in enumerate(nodes_raw):
        label = f"nodes[{i}]"
        if not isinstance(node, dict):
            raise fail(label, "expected a table")
        for key in node:
            if key not in _NODE_KEYS and key not in _OPTIONAL_NODE_KEYS:
                raise fail(f"{label}.{key}", "unknown field")
        for key, typ in _NODE_KEYS.items():
            if key not in node:
                raise fail(f"{label}.{key}", "missing")
            if not isinstance(node[key], typ):
                raise fail(f"{label}.{key}", f"expected a string, got {type(node[key]).__name__}")
        node_id = node["id"]
        if not node_id or not node_id.replace("-", "").replace("_", "").isalnum():
            raise fail(f"{label}.id", f"{node_id!r} must be non-empty letters, digits, - or _")
        if node_id in seen_ids:
            raise fail(f"{label}.id", f"duplicate node id {node_id!r}")
        seen_ids.add(node_id)
        host, port = _parse_address(node["address"], lambda p, lb=label: fail(f"{lb}.address", p))
        if f"{host}:{port}" in seen_addrs:
            raise fail(f"{label}.address", f"duplicate address {host}:{port}")
        seen_addrs.add(f"{host}:{port}")
        if not node["data_dir"]:
            raise fail(f"{label}.data_dir", "must not be empty")
        data_dir = _resolve(base, node["data_dir"])
        # Two nodes in one dir (or one inside the other's) would write one store, or one
        # node's files into the other's, and lose data: compare real (resolved) paths.
        real = data_dir.resolve()
        for other_label, other in seen_dirs:
            if real == other:
                raise fail(
                    f"{label}.data_dir",
                    f"{real} is also {other_label}.data_dir: every node needs its own data dir",
                )
            if real.is_relative_to(other) or other.is_relative_to(real):
                how = "is inside" if real.is_relative_to(other) else "contains"
                raise fail(
                    f"{label}.data_dir",
                    f"{real} {how} {other_label}.data_dir ({other}): nested data dirs mix "
                    "two nodes' files; every node needs its own, separate data dir",
                )
        seen_dirs.append((label, real))
        metrics = node.get("metrics")
        if metrics is not None:
            if not isinstance(metrics, str):
                raise fail(f"{label}.metrics", f"expected a string, got {type(metrics).__name__}")
            m_host, m_port = _parse_address(metrics, lambda p, lb=label: fail(f"{lb}.metrics", p))
            metrics = f"{m_host}:{m_port}"
            if metrics in seen_addrs:
                raise fail(f"{label}.metrics", f"{metrics} is already used by another address")
            seen_addrs.add(metrics)
        nodes.append(NodeConfig(node_id, host, port, data_dir, metrics))

    n = cluster.get("n", 3)
    if not 1 <= n <= len(nodes):
        raise fail("cluster.n", f"{n} must be between 1 and the number of nodes ({len(nodes)})")
    levels: dict[str, int] = {}
    for key in ("r", "w"):
        try:
            levels[key] = resolve_count(cluster.get(key, "quorum"), n, key)
        except InvalidArgument as exc:
            raise fail(f"cluster.{key}", str(exc)) from None
    read_repair = cluster.get("read_repair", "off")
    if read_repair not in READ_REPAIR_MODES:
        raise fail("cluster.read_repair", f"{read_repair!r} is not one of {READ_REPAIR_MODES}")
    engine = cluster.get("engine", "sqlite")
    if engine not in ENGINES:
        raise fail("cluster.engine", f"{engine!r} is not one of {ENGINES}")
    positive = {
        "vnodes": (cluster.get("vnodes", 64), 1, 4096),
        "request_timeout_ms": (cluster.get("request_timeout_ms", 2000), 1, 3_600_000),
        "max_key_bytes": (cluster.get("max_key_bytes", 1024), 1, 64 * 1024),
        "max_value_bytes": (cluster.get("max_value_bytes", 1 << 20), 1, 3 << 20),
        "heartbeat_interval_ms": (cluster.get("heartbeat_interval_ms", 200), 10, 60_000),
        "failure_detection_ms": (cluster.get("failure_detection_ms", 1500), 50, 600_000),
        "hint_replay_rate": (cluster.get("hint_replay_rate", 2000), 1, 1_000_000),
        "read_repair_wait_ms": (cluster.get("read_repair_wait_ms", 10), 0, 60_000),
        "speculative_read_ms": (cluster.get("speculative_read_ms", 30), 0, 60_000),
        "read_cache_mb": (cluster.get("read_cache_mb", 16), 0, 64 * 1024),
        "max_clock_drift_ms": (cluster.get("max_clock_drift_ms", 12_000), 1, 3_600_000),
        "max_timeout_ms": (cluster.get("max_timeout_ms", 60_000), 1, 3_600_000),
        "max_inflight_calls": (cluster.get("max_inflight_calls", 4096), 1, 1_000_000),
        "max_session_calls": (cluster.get("max_session_calls", 1024), 1, 1_000_000),
        "max_peer_pending": (cluster.get("max_peer_pending", 8192), 1, 1_000_000),
    }
    for key, (value, low, high) in positive.items():
        if not low <= value <= high:
            raise fail(f"cluster.{key}", f"{value} must be between {low} and {high}")
    if positive["request_timeout_ms"][0] > positive["max_timeout_ms"][0]:
        raise fail("cluster.request_timeout_ms", "must not be longer than max_timeout_ms")
    if positive["failure_detection_ms"][0] <= positive["heartbeat_interval_ms"][0]:
        raise fail("cluster.failure_detection_ms", "must be longer than heartbeat_interval_ms")
    hint_window = float(cluster.get("hint_window_s", 3 * 3600.0))
    if hint_window <= 0:
        raise fail("cluster.hint_window_s", f"{hint_window} must be positive")
    anti_entropy_interval = float(cluster.get("anti_entropy_interval_s", 0.0))
    if anti_entropy_interval < 0:
        raise fail(
            "cluster.anti_entropy_interval_s", f"{anti_entropy_interval} must be 0 (off) or more"
        )
    if "tombstone_grace_s" not in cluster:
        # Purging is only safe with scheduled repair (below). With anti-entropy off the
        # default is never to purge: math.inf, a grace period that never ends (``render``
        # leaves it out, and the node's purge skips it).
        tombstone_grace = 10 * 86400.0 if anti_entropy_interval > 0 else math.inf
    else:
        tombstone_grace = float(cluster["tombstone_grace_s"])
        if tombstone_grace <= 0:
            raise fail("cluster.tombstone_grace_s", f"{tombstone_grace} must be positive")
        if anti_entropy_interval == 0:
            # Nothing repairs a replica that missed a delete before the others purge the
            # tombstone: the deleted value comes back with the next (on-demand) repair.
            raise fail(
                "cluster.tombstone_grace_s",
                "tombstone purging needs scheduled anti-entropy: set anti_entropy_interval_s "
                "> 0 or leave tombstone_grace_s out (anti_entropy_interval_s = 0 means no "
                "scheduled repair, so purged tombstones let deleted values come back; left "
                "out, tombstones are never purged)",
            )
        if tombstone_grace <= anti_entropy_interval:
            # Cassandra's rule: a replica that missed a delete must be repaired before the
            # other replicas purge the tombstone, or the deleted value comes back.
            raise fail(
                "cluster.tombstone_grace_s",
                f"{tombstone_grace} must be longer than anti_entropy_interval_s "
                f"({anti_entropy_interval}): repair must run within the grace period",
            )
    if hint_window >= tombstone_grace:
        # A hint replayed after the grace period can carry a write older than a tombstone
        # its target already purged: that write then wins, and the deleted data returns.
        raise fail(
            "cluster.hint_window_s"
            if "hint_window_s" in cluster or "tombstone_grace_s" not in cluster
            else "cluster.tombstone_grace_s",
            f"hint_window_s ({hint_window}) must be shorter than tombstone_grace_s "
            f"({tombstone_grace}): a hint replayed after the grace period could resurrect "
            "data whose tombstone was already purged",
        )
    run_dir = _resolve(base, cluster.get("run_dir", "run"))
    tls = _parse_tls(raw.get("tls"), base, run_dir, fail)
    return ClusterConfig(
        name=name,
        n=n,
        r=levels["r"],
        w=levels["w"],
        vnodes=positive["vnodes"][0],
        sloppy=cluster.get("sloppy", True),
        read_repair=read_repair,
        request_timeout_ms=positive["request_timeout_ms"][0],
        max_key_bytes=positive["max_key_bytes"][0],
        max_value_bytes=positive["max_value_bytes"][0],
        engine=engine,
        run_dir=run_dir,
        nodes=tuple(nodes),
        heartbeat_interval_ms=positive["heartbeat_interval_ms"][0],
        failure_detection_ms=positive["failure_detection_ms"][0],
        hint_replay_rate=positive["hint_replay_rate"][0],
        hint_window_s=hint_window,
        read_repair_wait_ms=positive["read_repair_wait_ms"][0],
        speculative_read_ms=positive["speculative_read_ms"][0],
        read_cache_mb=positive["read_cache_mb"][0],
        anti_entropy_interval_s=anti_entropy_interval,
        tombstone_grace_s=tombstone_grace,
        tls=tls,
        max_clock_drift_ms=positive["max_clock_drift_ms"][0],
        max_timeout_ms=positive["max_timeout_ms"][0],
        max_inflight_calls=positive["max_inflight_calls"][0],
        max_session_calls=positive["max_session_calls"][0],
        max_peer_pending=positive["max_peer_pending"][0],
        source=source,
    )


def _parse_tls(raw: object, base: Path, run_dir: Path, fail: Any) -> TLSConfig:
    """``[tls]`` (``mode``, ``certs_dir``, ``client``), or ``tls = "on"|"off"`` alone."""
    if raw is None:
        raw = {}
    elif isinstance(raw, str):
        raw = {"mode": raw}
    if not isinstance(raw, dict):
        raise fail("tls", 'expected a [tls] table or tls = "on" | "off"')
    for key, value in raw.items():
        expected = _TLS_KEYS.get(key)
        if expected is None:
            raise fail(f"tls.{key}", "unknown field")
        if not isinstance(value, expected):
            raise fail(f"tls.{key}", f"expected a string, got {type(value).__name__}")
    mode = raw.get("mode", "on")
    if mode not in TLS_MODES:
        raise fail("tls.mode", f"{mode!r} is not one of {TLS_MODES}")
    client = raw.get("client", "admin")
    if not client or not client.replace("-", "").replace("_", "").isalnum():
        raise fail("tls.client", f"{client!r} must be non-empty letters, digits, - or _")
    certs_dir = _resolve(base, raw["certs_dir"]) if "certs_dir" in raw else run_dir / "certs"
    return TLSConfig(mode == "on", certs_dir, client)


def _type_name(expected: type | tuple[type, ...]) -> str:
    names = {int: "an integer", str: "a string", bool: "a boolean", float: "a number"}
    if isinstance(expected, tuple):
        return " or ".join(names[t] for t in expected)
    return names[expected]


def _parse_address(address: str, fail: Any) -> tuple[str, int]:
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise fail(f"{address!r} is not HOST:PORT")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise fail(f"port {port_text!r} must be a number from 1 to 65535")
    return host, int(port_text)


def _resolve(base: Path, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else (base / path)


def render(config: ClusterConfig) -> str:
    """The config as TOML text (used to write configs for local test clusters)."""
    lines = [
        "[cluster]",
        f'name = "{config.name}"',
        f"n = {config.n}",
        f"r = {config.r}",
        f"w = {config.w}",
        f"vnodes = {config.vnodes}",
        f"sloppy = {'true' if config.sloppy else 'false'}",
        f'read_repair = "{config.read_repair}"',
        f"request_timeout_ms = {config.request_timeout_ms}",
        f"max_key_bytes = {config.max_key_bytes}",
        f"max_value_bytes = {config.max_value_bytes}",
        f'engine = "{config.engine}"',
        f'run_dir = "{config.run_dir.as_posix()}"',
        f"heartbeat_interval_ms = {config.heartbeat_interval_ms}",
        f"failure_detection_ms = {config.failure_detection_ms}",
        f"hint_replay_rate = {config.hint_replay_rate}",
        f"hint_window_s = {config.hint_window_s}",
        f"read_repair_wait_ms = {config.read_repair_wait_ms}",
        f"speculative_read_ms = {config.speculative_read_ms}",
        f"read_cache_mb = {config.read_cache_mb}",
        f"anti_entropy_interval_s = {config.anti_entropy_interval_s}",
        f"tombstone_grace_s = {config.tombstone_grace_s}"
        if math.isfinite(config.tombstone_grace_s)
        else "# tombstone_grace_s left out: tombstones are never purged",
        f"max_clock_drift_ms = {config.max_clock_drift_ms}",
        f"max_timeout_ms = {config.max_timeout_ms}",
        f"max_inflight_calls = {config.max_inflight_calls}",
        f"max_session_calls = {config.max_session_calls}",
        f"max_peer_pending = {config.max_peer_pending}",
        "",
        "[tls]",
        f'mode = "{"on" if config.tls_config.enabled else "off"}"',
        f'certs_dir = "{config.tls_config.certs_dir.as_posix()}"',
        f'client = "{config.tls_config.client}"',
    ]
    for node in config.nodes:
        lines += [
            "",
            "[[nodes]]",
            f'id = "{node.id}"',
            f'address = "{node.address}"',
            f'data_dir = "{node.data_dir.as_posix()}"',
        ]
        if node.metrics is not None:
            lines.append(f'metrics = "{node.metrics}"')
    return "\n".join(lines) + "\n"
