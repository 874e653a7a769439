"""Real network partitions: every node in its own network namespace, joined by a bridge,
cut with iptables DROP rules.

Rules and invariants:
- Only as root with ``ip`` and ``iptables`` on the PATH; ``unavailable_reason`` says why
  not, and callers fall back to the faults at the gRPC seam.
- Every namespace, veth pair and bridge made here carries the network's tag, and
  ``teardown`` removes all of them, whatever failed before it.
- Addresses live in a private /24 (10.213.X.0/24) that exists only on this bridge, inside
  namespaces this object made; the root namespace holds .1 so local clients reach every
  node. Rules cut node-to-node traffic only, as the seam faults do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zlib
from collections.abc import Iterable

PORT = 7100


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    return None


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")


class NetnsNetwork:
    def __init__(self, tag: str, node_ids: list[str]) -> None:
        if not tag.isalnum() or len(tag) > 5:
            raise ValueError("the tag must be at most 5 letters or digits")
        self.tag = tag
        self.node_ids = list(node_ids)
        octet = 16 + zlib.crc32(tag.encode()) % 224
        self.subnet = f"10.213.{octet}"
        self.bridge = f"kb{tag}"
        self.ns = {n: f"kv{tag}{i}" for i, n in enumerate(self.node_ids)}
        self.ip = {n: f"{self.subnet}.{10 + i}" for i, n in enumerate(self.node_ids)}
        self.created = False

    @property
    def addresses(self) -> list[str]:
        return [f"{self.ip[n]}:{PORT}" for n in self.node_ids]

    def create(self) -> None:
        self.created = True
        try:
            _run("ip", "link", "add", self.bridge, "type", "bridge")
            _run("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
            _run("ip", "link", "set", self.bridge, "up")
            for i, node in enumerate(self.node_ids):
                ns, host, inner = self.ns[node], f"vh{self.tag}{i}", f"vc{self.tag}{i}"
                _run("ip", "netns", "add", ns)
                _run("ip", "link", "add", host, "type", "veth", "peer", "name", inner)
                _run("ip", "link", "set", inner, "netns", ns)
                _run("ip", "link", "set", host, "master", self.bridge)
                _run("ip", "link", "set", host, "up")
                _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{self.ip[node]}/24",
                     "dev", inner)  # fmt: skip
                _run("ip", "netns", "exec", ns, "ip", "link", "set", inner, "up")
                _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.teardown()
            raise

    def command(self, node: str) -> list[str]:
        """The prefix that runs a command inside ``node``'s namespace."""
        return ["ip", "netns", "exec", self.ns[node]]

    def cut(self, node: str, unreachable: Iterable[str]) -> None:
        """Replace ``node``'s rules: drop everything to and from ``unreachable`` nodes."""
        ns = self.ns[node]
        _run("ip", "netns", "exec", ns, "iptables", "-F")
        for other in sorted(unreachable):
            ip = self.ip[other]
            _run("ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-s", ip, "-j", "DROP")
            _run("ip", "netns", "exec", ns, "iptables", "-A", "OUTPUT", "-d", ip, "-j", "DROP")

    def heal(self) -> None:
        for node in self.node_ids:
            self.cut(node, ())

    def teardown(self) -> None:
        if not self.created:
            return
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)
        self.created = False
