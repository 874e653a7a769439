"""Faults injected at the network seam of one node: partitions, drops and delays.

Rules: faults act on node-to-node replica traffic only, in both directions at the node
that holds them (outgoing messages to an isolated peer are dropped before sending;
frames arriving from it are dropped on receipt), so isolating a peer on one side is
enough to cut the pair. A dropped request is never answered and so ends in its
deadline, exactly as over a real partition: the caller cannot tell it was not sent.
Randomness here is the runtime's, never the core's. ``lying_disk`` is a storage fault
kept here because it is switched the same way (Admin.SetFaults): the node acknowledges
writes it holds only in memory, so a crash loses them; ``lose_hints`` likewise: the node
acknowledges hints it then drops, so their owners miss those writes until repair.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

# Test hooks, not faults of the world: classic Dynamo bugs the harness must catch. Like
# every fault, they exist only with --enable-faults.
#   abd-no-query             linearizable writes skip ABD's first round (trust the clock)
#   abd-no-write-back        linearizable reads skip ABD's write-back
#   strict-counts-fallbacks  strict writes count fallbacks' acks toward W
#   first-reply-wins         reads return the first replica's answer, not the newest
#   membership-no-stream     a node gaining ranges drops the chunks streamed to it
#   no-epoch-fence           replicas serve requests placed with an older ring epoch
PLANTED_BUGS = (
    "abd-no-query",
    "abd-no-write-back",
    "strict-counts-fallbacks",
    "first-reply-wins",
    "membership-no-stream",
    "no-epoch-fence",
)


@dataclass(slots=True)
class FaultRules:
    isolated: frozenset[str] = frozenset()
    drop: float = 0.0
    delay_s: float = 0.0
    lying_disk: bool = False  # the node's own writes: acked, held in memory only
    lose_hints: bool = False  # hints for others: acked, then dropped (never replayed)
    planted: frozenset[str] = frozenset()  # PLANTED_BUGS switched on (the harness's own test)
    rng: random.Random = field(default_factory=random.Random)

    def blocks(self, peer: str) -> bool:
        """Whether a message to or from ``peer`` is lost."""
        if peer in self.isolated:
            return True
        return self.drop > 0.0 and self.rng.random() < self.drop

    @property
    def active(self) -> bool:
        return bool(self.isolated) or self.drop > 0.0 or self.delay_s > 0.0
