"""SIGTERM and SIGINT: stop at once, fail, and leave the target no doubt that the output is cut.

The SDK's own handler logs "Gracefully shutting down...", writes the tap's in-memory state and
exits 0, after waiting for detection batches still downloading (up to ``request_timeout``). So an
interrupted run looked like a finished one: a STATE that may cover records never written, exit 0
recorded as success by ``meltano run``, and a target that publishes what it got. Here a signal
instead unwinds the main thread at once (a blocked read or wait is interrupted), writes no STATE,
ends stdout with :func:`marker_line`, and exits ``128 + signal`` without waiting for worker
threads still in a socket read: the process exit closes their connections.

The marker is deliberately not JSON: Meltano closes the target's input after a failed tap like
after a finished one, so the output itself must say that it is incomplete, and every Singer
target rejects a line that is not JSON instead of treating the input as complete.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import typing as t

from tap_qualys import concurrency

if t.TYPE_CHECKING:
    from types import FrameType


def marker_line(signum: int) -> str:
    """The last line of an interrupted tap's output."""
    return f"tap-qualys was stopped by {signal.Signals(signum).name}: this output is incomplete\n"


class Interrupted(BaseException):
    """Unwinds the sync from wherever the signal found it; ``except Exception`` cannot catch it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupt(signum: int) -> None:
    """The signal handler's body: stop the pipelines from waiting, then unwind the main thread."""
    if concurrency.STOPPING.is_set():
        return  # a second signal must not break the shutdown already under way
    concurrency.STOPPING.set()
    raise Interrupted(signum)


def stop_while_starting(signum: int, frame: FrameType | None) -> None:
    """Before the tap object exists: nothing written yet, nothing to unwind; mark and exit.

    The SDK installs its handler only once the tap is built, after a second or more of imports.
    Until then a signal killed the tap without the marker, and the target took the empty output
    for a finished run and published it.
    """
    name = signal.Signals(signum).name
    try:
        os.write(2, f"tap-qualys stopped by {name} while starting: the run failed\n".encode())
        os.write(1, marker_line(signum).encode())
    except OSError:
        pass  # the target is gone: nothing left to tell it
    os._exit(128 + signum)


def guard_start_up() -> None:
    """Until the SDK installs its own handler, SIGTERM and SIGINT stop the tap with the marker."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop_while_starting)


def output_closed(logger: logging.Logger) -> t.NoReturn:
    """The target stopped reading (signalled, or failed): say so, and exit 1 at once.

    click would swallow the broken pipe and leave "An unhandled error occurred while syncing"
    as the tap's last, causeless words.
    """
    logger.error(
        "tap-qualys: its output was closed before the run finished (the target stopped or "
        "failed: see its log); the run failed, and the next run resumes from the last STATE "
        "the target emitted"
    )
    # Python would flush stdout at exit into the same broken pipe.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    logging.shutdown()
    os._exit(1)  # not sys.exit: worker threads may be in a read for up to request_timeout


def finish(exc: Interrupted, logger: logging.Logger) -> t.NoReturn:
    """Log one line, hand on the records already written, mark the output, exit 128 + signal."""
    name = signal.Signals(exc.signum).name
    logger.error(
        "tap-qualys stopped by %s: the run failed; no STATE was written after the signal, "
        "so the next run resumes from the last one",
        name,
    )
    try:
        # Records already in the buffer are complete lines; the target may load them, and the
        # marker after them makes it fail before it could treat them as a finished run.
        sys.stdout.write(marker_line(exc.signum))
        sys.stdout.flush()
    except (OSError, ValueError):
        pass  # the target is gone: nothing left to tell it
    logging.shutdown()
    # Not sys.exit: the interpreter would join the worker threads, each still blocked in a read
    # for up to request_timeout.
    os._exit(128 + exc.signum)
