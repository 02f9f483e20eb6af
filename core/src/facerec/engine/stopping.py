"""Stopping a training run on SIGTERM / Ctrl-C: after the current step, with the last checkpoint written."""

from __future__ import annotations

import signal
import threading
from typing import Any

from ..errors import FacerecError


class TrainingInterrupted(FacerecError):
    """SIGTERM / Ctrl-C during :meth:`Trainer.fit`: the last checkpoint is written, then this is raised
    (``exit_code`` 128 + signal number, as a shell reports a process ended by that signal)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + int(signum)


class _StopRequest:
    """SIGTERM / SIGINT handlers that ask the loop to stop after the current step (a second signal
    stops at once, as usual). Installed only in the main thread; the old handlers come back on exit."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), signal.SIGINT) if s is not None)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # asked twice: do not wait for the step to finish
            self.__exit__()
            signal.raise_signal(signum)
            return
        self.signum = signum

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                try:
                    self._old[sig] = signal.signal(sig, self._handle)
                except (ValueError, OSError):
                    pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
