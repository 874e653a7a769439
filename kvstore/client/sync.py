"""A blocking client for scripts and notebooks: ``Client`` on a private event loop.

Rule: one ``SyncClient`` owns one event loop (uvloop where installed) for its whole
life, because gRPC channels belong to the loop they were made on. It is not
thread-safe; use one per thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar, overload

from kvstore import config as config_mod
from kvstore.client.aio import _FROM_CONFIG, Client, GetResult, Level, PutResult, Transport
from kvstore.security.tls import TLSFiles

T = TypeVar("T")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop

        return uvloop.new_event_loop  # type: ignore[no-any-return]
    except ImportError:
        return asyncio.new_event_loop


class SyncClient:
    def __init__(self, addresses: Sequence[str], **kwargs: Any) -> None:
        self._runner = asyncio.Runner(loop_factory=_loop_factory())
        self._client = self._runner.run(self._make(lambda: Client(addresses, **kwargs)))

    @classmethod
    def from_config(
        cls,
        config: str | Path | config_mod.ClusterConfig,
        *,
        timeout: float | None = None,
        transport: Transport = "session",
        tls: TLSFiles | None = _FROM_CONFIG,
    ) -> SyncClient:
        self = cls.__new__(cls)
        self._runner = asyncio.Runner(loop_factory=_loop_factory())
        self._client = self._runner.run(
            self._make(
                lambda: Client.from_config(config, timeout=timeout, transport=transport, tls=tls)
            )
        )
        return self

    @staticmethod
    async def _make(factory: Callable[[], Client]) -> Client:
        return factory()  # made inside the loop, so its channels bind to it

    def _run(self, work: Awaitable[T]) -> T:
        return self._runner.run(work)  # type: ignore[arg-type]

    def put(self, key: str | bytes, value: str | bytes, **kwargs: Any) -> PutResult:
        return self._run(self._client.put(key, value, **kwargs))

    def delete(self, key: str | bytes, **kwargs: Any) -> PutResult:
        return self._run(self._client.delete(key, **kwargs))

    @overload
    def get(
        self, key: str | bytes, *, r: Level | None = ..., trace: Literal[False] = ..., **kwargs: Any
    ) -> bytes | None: ...

    @overload
    def get(
        self, key: str | bytes, *, r: Level | None = ..., trace: Literal[True], **kwargs: Any
    ) -> GetResult: ...

    def get(
        self, key: str | bytes, *, r: Level | None = None, trace: bool = False, **kwargs: Any
    ) -> bytes | GetResult | None:
        return self._run(self._client.get(key, r=r, trace=trace, **kwargs))  # type: ignore[call-overload, no-any-return]

    def close(self) -> None:
        try:
            self._runner.run(self._client.close())
        finally:
            self._runner.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
