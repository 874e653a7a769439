"""A deterministic asyncio event loop on virtual time.

Rules and invariants:
- No threads, no real I/O, no real time: ``time()`` is virtual seconds. When nothing is
  ready, time jumps to the next timer. Code runs in zero virtual time; only timers (the
  simulated network's latencies, sleeps, deadlines) move the clock.
- Timers fire in (deadline, sequence) order, ready callbacks in FIFO order, so one
  program and one seed give one schedule: nothing depends on hash seeds or addresses.
- Every callback belongs to a simulated *process* (a node incarnation, a client, the
  harness), named by the ``PROCESS`` context variable it was scheduled under. A paused
  process's callbacks are parked, in order, and run when it resumes (SIGSTOP / SIGCONT:
  its timers fire late, its peers' messages wait). A killed process's callbacks never
  run again, and its tasks are forgotten, not cancelled (SIGKILL runs no ``finally``).
- A run where nothing is ready, no timer is set and the main future is not done is a
  deadlock, reported as ``SimDeadlock`` with the tasks still waiting.
- Handles and timers are ``asyncio.Handle``/``TimerHandle`` subclasses made without
  asyncio's debug-mode bookkeeping (the simulator never runs in debug mode), and one
  ``_run_once`` call runs every iteration until ``stop()``: a seed runs some 140k
  callbacks and 100k timers, and these frames were a sixth of its wall time.
- ``run_in_executor`` and ``to_thread`` are refused: a thread would make the run depend
  on the operating system's scheduler.
- While ``run`` runs, the cyclic garbage collector runs rarely: a seed allocates millions
  of short-lived objects that reference counting frees, and at Python's default
  thresholds the collector's passes over the growing simulated world took 8% of a run.
  Collection timing never changes what the simulation does (no finalizer it runs is part
  of the simulated world's logic), so this is speed only.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import heapq
import itertools
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

PROCESS: contextvars.ContextVar[str] = contextvars.ContextVar("sim_process", default="main")

# Virtual time starts here rather than at 0, so that wall clocks derived from it look
# like this century's and nothing special-cases small numbers.
EPOCH_S = 1_800_000_000.0


class SimDeadlock(RuntimeError):
    """Every simulated process is blocked and no timer is set: the run can never finish."""


class _Handle(asyncio.Handle):
    """``asyncio.Handle`` made without its debug-mode check (the simulator never runs in
    asyncio's debug mode, and the check is a call per callback)."""

    __slots__ = ()

    def __init__(
        self,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context,
    ) -> None:
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._loop = loop
        self._source_traceback = None
        self._repr = None
        self._context = context


class _Timer(asyncio.TimerHandle):
    """``asyncio.TimerHandle`` made the same way, already scheduled (it is on the heap)."""

    __slots__ = ()

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        context: contextvars.Context,
    ) -> None:
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._loop = loop
        self._source_traceback = None
        self._repr = None
        self._context = context
        self._when = when
        self._scheduled = True

    def cancel(self) -> None:
        # the loop needs no notice (cancelled timers are skipped when they come up)
        if not self._cancelled:
            self._cancelled = True
            self._callback = None  # type: ignore[assignment]
            self._args = None  # type: ignore[assignment]


class VirtualLoop(asyncio.BaseEventLoop):
    def __init__(self, start: float = 0.0) -> None:
        super().__init__()
        self._now = start
        self._timers: list[tuple[float, int, asyncio.TimerHandle]] = []
        self._sequence = itertools.count()
        self._paused: set[str] = set()
        self._dead: set[str] = set()
        self._parked: dict[str, list[asyncio.Handle]] = {}
        self._tasks: dict[str, list[asyncio.Task[Any]]] = {}
        self.steps = 0  # callbacks run: a cheap fingerprint of the schedule
        self.set_task_factory(self._make_task)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ time

    def time(self) -> float:
        return self._now

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        if self._closed:  # type: ignore[attr-defined]
            raise RuntimeError("Event loop is closed")
        if context is None:
            context = contextvars.copy_context()
        timer = _Timer(when, callback, args, self, context)
        heapq.heappush(self._timers, (when, next(self._sequence), timer))
        return timer

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        # call_at's body, not a call to it: a run makes some 100k timers
        if self._closed:  # type: ignore[attr-defined]
            raise RuntimeError("Event loop is closed")
        if context is None:
            context = contextvars.copy_context()
        when = self._now + delay
        timer = _Timer(when, callback, args, self, context)
        heapq.heappush(self._timers, (when, next(self._sequence), timer))
        return timer

    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        if context is None:
            context = contextvars.copy_context()
        handle = _Handle(callback, args, self, context)
        self._ready.append(handle)  # type: ignore[attr-defined]
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        pass  # cancelled timers are skipped when they come up

    # ------------------------------------------------------------- processes

    def _make_task(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any],
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, context=context)
        owner = PROCESS.get() if context is None else context.get(PROCESS, "main")
        if owner in self._dead:
            task._log_destroy_pending = False  # type: ignore[attr-defined]
        tasks = self._tasks.get(owner)
        if tasks is None:
            tasks = self._tasks[owner] = []
        elif len(tasks) >= 4096:
            tasks[:] = [t for t in tasks if not t.done()]  # pruned now and then, not per task
        tasks.append(task)
        return task

    def pause(self, process: str) -> None:
        self._paused.add(process)

    def resume(self, process: str) -> None:
        self._paused.discard(process)
        self._ready.extend(self._parked.pop(process, []))  # type: ignore[attr-defined]

    def kill(self, process: str) -> None:
        """The process is gone: none of its callbacks run again, its tasks are dropped."""
        self._dead.add(process)
        self._paused.discard(process)
        self._parked.pop(process, None)
        for task in self._tasks.pop(process, []):
            task._log_destroy_pending = False  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ loop

    def _run_once(self) -> None:
        # One call runs iterations until stop() is called (run_forever would call again
        # for each, checking ``_stopping`` in between, as this does): a run has 130k
        # iterations, most of them one callback each.
        ready = self._ready  # type: ignore[attr-defined]
        timers = self._timers
        dead, paused = self._dead, self._paused  # mutated in place, never replaced
        steps = self.steps
        try:
            while True:
                while timers and timers[0][2]._cancelled:  # type: ignore[attr-defined]
                    heapq.heappop(timers)
                if not ready and not self._stopping:  # type: ignore[attr-defined]
                    if not timers:
                        raise SimDeadlock(self._describe_blocked())
                    if timers[0][0] > self._now:
                        self._now = timers[0][0]
                while timers and timers[0][0] <= self._now:
                    _, _, timer = heapq.heappop(timers)
                    timer._scheduled = False  # type: ignore[attr-defined]
                    if not timer._cancelled:  # type: ignore[attr-defined]
                        ready.append(timer)
                for _ in range(len(ready)):
                    handle: asyncio.Handle = ready.popleft()
                    if handle._cancelled:  # type: ignore[attr-defined]
                        continue
                    context = handle._context  # type: ignore[attr-defined]
                    if dead or paused:  # most of a run has neither: skip the lookup
                        owner = context.get(PROCESS, "main")
                        if owner in dead:
                            continue
                        if owner in paused:
                            self._parked.setdefault(owner, []).append(handle)
                            continue
                    steps += 1
                    # Handle._run's work without its frame
                    try:
                        context.run(handle._callback, *handle._args)  # type: ignore[attr-defined]
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        self.call_exception_handler(
                            {"message": f"Exception in callback {handle!r}", "exception": exc,
                             "handle": handle}
                        )  # fmt: skip
                if self._stopping:  # type: ignore[attr-defined]
                    return
        finally:
            self.steps = steps

    def _describe_blocked(self) -> str:
        waiting = [
            f"{owner}: {task.get_name()}"
            for owner, tasks in self._tasks.items()
            if owner not in self._dead
            for task in tasks
            if not task.done()
        ]
        parked = sorted(self._parked)
        return (
            f"deadlock at t={self._now - EPOCH_S:.6f}s: nothing ready and no timer set; "
            f"{len(waiting)} tasks waiting ({'; '.join(waiting[:8])})"
            + (f"; paused forever: {', '.join(parked)}" if parked else "")
        )

    # -------------------------------------------------------- refused: threads

    def _write_to_self(self) -> None:
        pass  # nothing to wake: there is no selector and no other thread

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> Any:  # type: ignore[override]
        raise RuntimeError(
            "the simulator runs no threads (run_in_executor/to_thread): run the work "
            "inline, or inject an offload that does"
        )

    def _process_events(self, event_list: list[Any]) -> None:
        pass


def run(main: Callable[[], Coroutine[Any, Any, T]], *, start: float = EPOCH_S) -> T:
    """Run ``main()`` to completion on a fresh virtual loop; returns its result."""
    loop = VirtualLoop(start)
    try:
        asyncio.set_event_loop(loop)
        with _rare_collections():
            return loop.run_until_complete(main())
    finally:
        for process in list(loop._tasks):
            loop.kill(process)  # the simulated world ends: its processes with it
        asyncio.set_event_loop(None)
        loop.close()


@contextlib.contextmanager
def _rare_collections() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(50_000, 50, 100)  # measured: as fast as no collector at all
    try:
        yield
    finally:
        gc.set_threshold(*before)


def in_process(process: str, fn: Callable[..., T], *args: Any) -> T:
    """Call ``fn`` with ``PROCESS`` set to ``process``: tasks, timers and callbacks it
    creates belong to that process (paused, resumed and killed with it)."""
    return process_context(process).run(fn, *args)


def process_context(process: str) -> contextvars.Context:
    context = contextvars.copy_context()
    context.run(PROCESS.set, process)
    return context
