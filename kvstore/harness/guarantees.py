"""Which guarantee each consistency setting promises, and whether a run kept it.

The promises are DESIGN.md's table:
- ``linearizable``: the linearizable level; the history must be linearizable per key.
- ``no-stale-reads``: strict quorums with R + W > N; no read may return a value older
  than a write that completed before the read began. A stale read whose missed write
  is itself a *lost write* (it lost last-writer-wins to an older write with a higher
  timestamp, e.g. under clock skew) is reported as a lost write, as the table says,
  and does not count as a stale read.
- ``eventual``: anything weaker (R + W <= N, or sloppy); staleness is measured, not a
  failure. What must hold: after healing and a final read of every key at ``all`` with
  blocking read repair, every replica of every key holds the same version.
Every promise, eventual included, also requires:
- convergence (above), and, for the ``set`` workload, every acknowledged write in the
  final state;
- no unexpected values: every read returns nil or a value some write could have
  produced (acknowledged or of unknown outcome, invoked before the read ended), never
  the value of a write that definitely failed or that nobody wrote.
Lost writes are always reported. The strict promises (``linearizable`` and
``no-stale-reads``) allow them only in a run with the ``clock`` nemesis: with hybrid
logical clocks and one true clock, last-writer-wins must not lose an acknowledged write
to an earlier one (``checks._lost_writes`` says why that excludes no legitimate case).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kvstore.core.consistency import quorum

GUARANTEES = ("linearizable", "no-stale-reads", "eventual")


@dataclass(frozen=True, slots=True)
class Setting:
    consistency: str | None  # a preset, or None when r/w are given
    r: int | str | None
    w: int | str | None
    sloppy: bool
    read_repair: str

    def resolved(self, n: int) -> tuple[int, int]:
        levels = {"one": 1, "two": 2, "three": 3, "quorum": quorum(n), "all": n}
        if self.consistency == "linearizable":
            return quorum(n), quorum(n)
        if self.consistency is not None:
            return levels[self.consistency], levels[self.consistency]
        r = self.r if isinstance(self.r, int) else levels[self.r or "quorum"]
        w = self.w if isinstance(self.w, int) else levels[self.w or "quorum"]
        return r, w

    def client_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"sloppy": self.sloppy}
        if self.consistency is not None:
            options["consistency"] = self.consistency
            if self.consistency == "linearizable":
                options.pop("sloppy")
        return options

    def describe(self, n: int) -> str:
        if self.consistency is not None:
            label = self.consistency
        else:
            r, w = self.resolved(n)
            label = f"r={r},w={w}"
        extras = ["sloppy" if self.sloppy else "strict"]
        if self.read_repair != "off":
            extras.append(f"read-repair={self.read_repair}")
        return f"{label} ({', '.join(extras)})"


def promised(setting: Setting, n: int) -> str:
    if setting.consistency == "linearizable":
        return "linearizable"
    r, w = setting.resolved(n)
    if r + w > n and not setting.sloppy:
        return "no-stale-reads"
    return "eventual"
