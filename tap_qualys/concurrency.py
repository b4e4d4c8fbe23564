"""Parallel batch fetches, bounded, with results handed back in submission order.

Qualys allows a fixed number of simultaneous calls per API and subscription
(``X-Concurrency-Limit-Limit``, often 2) and answers one more with 409/1960. Other tools may hold
some of those slots. :class:`ConcurrencyLimit` is the slot count we allow ourselves: it starts at
one call, learns the subscription's limit from the first answer's headers, and gives a slot back
for good after every 1960. :class:`OrderedPipeline` runs fetches on worker threads under that
limit and returns their results to the caller's thread in the order they were submitted, never
holding more than a small window of finished results, so memory stays flat and records are only
ever emitted by the main thread.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import threading
import time
import typing as t
import weakref
from concurrent.futures import Future, ThreadPoolExecutor

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

T = t.TypeVar("T")

logger = logging.getLogger(__name__)

#: How long a finished call still counts against the limit on Qualys' side.
SLOT_SETTLE_SECONDS = 0.05

#: Set when the tap was signalled to stop (signals.py): pipelines stop waiting for their calls.
STOPPING = threading.Event()
#: glibc's ``mallopt`` parameter for the number of malloc arenas, and the tap's number.
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def limit_malloc_arenas() -> None:
    """Let every thread share :data:`MALLOC_ARENAS` glibc malloc arenas (before threads start).

    glibc gives threads arenas of their own, up to 8 per core, and an arena keeps what was
    freed in it for its own thread. The fetch workers decode postureInfo and HLD answers, so
    each would hold a batch's worth of freed memory: with every stream selected, 28 MiB of the
    tap's peak RSS at 1,000 hosts. Python threads take turns under the GIL anyway, so sharing
    arenas costs no time. Nothing happens without glibc (macOS, musl's no-op).
    """
    try:
        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    except (OSError, TypeError):  # no C library to open by that name (Windows)
        return
    if mallopt is not None:
        mallopt(_M_ARENA_MAX, MALLOC_ARENAS)


class PauseGate:
    """A pause every caller of one API honours: a gateway 429 holds for all of them.

    The worker that got the 429 sleeps its ``Retry-After`` in the retry policy; without the gate,
    the other workers would keep calling during that time and each call would be another 429.
    """

    def __init__(self) -> None:
        """No pause until a rate limit is reported."""
        self._lock = threading.Lock()
        self._resume_at = 0.0

    def pause(self, seconds: float) -> None:
        """Start no call for ``seconds`` from now."""
        with self._lock:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    def wait(self) -> None:
        """Return once no pause is in force."""
        while True:
            with self._lock:
                delay = self._resume_at - time.monotonic()
            if delay <= 0:
                return
            time.sleep(delay)


_pause_gates: weakref.WeakKeyDictionary[object, PauseGate] = weakref.WeakKeyDictionary()
_pause_gates_lock = threading.Lock()


def shared_pause_gate(owner: object) -> PauseGate:
    """The one pause gate of ``owner`` (the tap): every stream on that API shares it."""
    with _pause_gates_lock:
        gate = _pause_gates.get(owner)
        if gate is None:
            gate = _pause_gates[owner] = PauseGate()
        return gate


class ConcurrencyLimit:
    """How many calls to one API we run at once; adjusted from headers and 409/1960."""

    def __init__(self, *, maximum: int | None = None, headroom: int = 0) -> None:
        """``maximum`` caps the limit (the max_concurrency setting); ``headroom`` is left free.

        Until the first answer shows ``X-Concurrency-Limit-Limit`` only one call runs, so a
        subscription limited to one call (Express) never sees a 409 from us.
        """
        self.maximum = maximum
        self.headroom = headroom
        self._limit = 1
        self._running = 0
        self._observed = False
        self._resume_at = 0.0
        self._settling: collections.deque[float] = collections.deque()
        self._cond = threading.Condition()

    @property
    def limit(self) -> int:
        """The number of calls allowed at once right now."""
        with self._cond:
            return self._limit

    @property
    def ceiling(self) -> int:
        """The most calls this limit could ever allow (sizes thread pools)."""
        return self.maximum or 64

    def observe(self, headers: Mapping[str, str]) -> None:
        """Size the limit from the first answer that carries ``X-Concurrency-Limit-Limit``."""
        with self._cond:
            if self._observed:
                return
            raw = headers.get("X-Concurrency-Limit-Limit")
            if raw is None or not raw.strip().isdigit():
                return
            self._observed = True
            allowed = max(1, int(raw) - self.headroom)
            if self.maximum is not None:
                allowed = min(allowed, self.maximum)
            self._limit = allowed
            self._cond.notify_all()
        logger.info(
            "Qualys allows %s parallel calls to this API; using %d (headroom %d)",
            raw,
            allowed,
            self.headroom,
        )

    def reduce(self) -> None:
        """Use one slot fewer from now on: another client holds one (409/1960).

        Never below one. The limit is not raised again: the other client may come back, and
        every probe for a free slot would cost a 409.
        """
        with self._cond:
            if self._limit > 1:
                self._limit -= 1
                logger.warning(
                    "Qualys refused a parallel call (409/1960); now using %d", self._limit
                )

    def pause(self, seconds: float) -> None:
        """Start no call for ``seconds``: a 409/1965 rate limit holds for the whole API.

        Without this, the other workers would call during the ToWait the first one got, and
        each such call is another 1965.
        """
        with self._cond:
            self._resume_at = max(self._resume_at, time.monotonic() + seconds)
            self._cond.notify_all()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one call slot for the duration of a request, waiting for one to be free.

        A freed slot is reused only after :data:`SLOT_SETTLE_SECONDS`: Qualys counts a call as
        running until a moment after its last byte, and a call sent at once gets a 409/1960.
        """
        with self._cond:
            while True:
                now = time.monotonic()
                while self._settling and self._settling[0] <= now:
                    self._settling.popleft()
                paused = self._resume_at - now
                if paused > 0:
                    self._cond.wait(paused)
                elif self._running + len(self._settling) >= self._limit:
                    self._cond.wait(self._settling[0] - now if self._settling else None)
                else:
                    break
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._settling.append(time.monotonic() + SLOT_SETTLE_SECONDS)
                self._cond.notify_all()


class OrderedPipeline(t.Generic[T]):
    """Run jobs on worker threads; hand results back in submission order, bounded.

    At most ``window`` jobs are pending (running, queued or finished but not yet taken) at a
    time. ``discard`` releases a finished result that will never be taken (after an error).
    """

    def __init__(
        self,
        *,
        workers: int,
        window: Callable[[], int],
        discard: Callable[[T], None] | None = None,
    ) -> None:
        """Start the pool lazily; ``window`` is re-read on each submit as the limit adapts."""
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qualys")
        self._window = window
        self._discard = discard
        self._pending: collections.deque[Future[T]] = collections.deque()

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not yet handed back."""
        return len(self._pending)

    def submit(self, job: Callable[[], T]) -> list[T]:
        """Queue ``job``; return the results that must be consumed now, oldest first.

        Finished results at the head are returned without waiting; while the window is full
        the oldest job is waited for, which is what keeps memory bounded.
        """
        ready = self._take_done()
        while len(self._pending) >= max(1, self._window()):
            ready.append(self._pending.popleft().result())
        self._pending.append(self._pool.submit(job))
        return ready

    def drain(self) -> Iterator[T]:
        """Yield every remaining result, in submission order, waiting as needed."""
        while self._pending:
            yield self._pending[0].result()
            self._pending.popleft()

    def close(self) -> None:
        """Cancel what has not started, wait for the rest and discard unclaimed results.

        When the tap is stopping on a signal, running calls are not waited for: a batch can take
        up to ``request_timeout`` to answer, and the process exits without its result.
        """
        for future in self._pending:
            future.cancel()
        stopping = STOPPING.is_set()
        self._pool.shutdown(wait=not stopping, cancel_futures=stopping)
        while self._pending:
            future = self._pending.popleft()
            if not future.done() or future.cancelled() or future.exception() is not None:
                continue
            if self._discard is not None:
                self._discard(future.result())

    def _take_done(self) -> list[T]:
        ready: list[T] = []
        while self._pending and self._pending[0].done():
            ready.append(self._pending.popleft().result())
        return ready

    def __enter__(self) -> OrderedPipeline[T]:
        """Use as a context manager so workers never outlive the stream."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the pipeline."""
        self.close()
