"""SIGTERM and SIGHUP handled like Ctrl-C.

A terminal closing (SIGHUP), ``kill``, a job scheduler or a parent that stops its child
(SIGTERM) end a command the way Ctrl-C does: :class:`Terminated` (a
``KeyboardInterrupt``) is raised in the main thread, so every cleanup that Ctrl-C runs
runs for them too (temporary files removed, the frozen weights set aside put back,
locks released) and the command prints its one line with the resume hint. A second
signal while that cleanup runs is ignored (SIGKILL still ends the process at once).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

HANDLED = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal other than SIGINT."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # the shell's convention for "ended by a signal"


def _raise(signum, frame) -> None:
    for s in HANDLED:  # the cleanup the exception starts is not interrupted again
        signal.signal(s, signal.SIG_IGN)
    raise Terminated(signum)


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`Terminated` (main thread only;
    elsewhere signals cannot be handled). The earlier handlers are restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise) for s in HANDLED}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
