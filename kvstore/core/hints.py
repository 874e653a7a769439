"""Hinted handoff, pure: which hints are too old to keep.

Rules:
- A hint stored more than the hint window ago (by the fallback's physical clock, which
  stamped it) is dropped, never replayed: anti-entropy repairs what it covered. The
  config keeps the window shorter than ``tombstone_grace_s``, so no late hint can bring
  back what a purged tombstone deleted.
- A hint exactly one window old is still kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class StoredHint(Protocol):
    @property
    def hint_id(self) -> int: ...

    @property
    def stored_at_us(self) -> int: ...


def expired(hints: Iterable[StoredHint], now_us: int, window_us: int) -> list[int]:
    """The ids of ``hints`` older than ``window_us`` at ``now_us``, in their order."""
    return [h.hint_id for h in hints if now_us - h.stored_at_us > window_us]
