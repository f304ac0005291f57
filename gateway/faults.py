"""Named crash points for the crash-safety tests: ``[faults] crash`` in the config makes the process SIGKILL
itself at a point with the given probability. Empty (the default) means no effect; never set it in production.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Mapping

POINTS = frozenset({"submit.before_answer", "send.after_post", "receive.before_answer", "deliver.after_write"})


class Faults:
    def __init__(self, crash: Mapping[str, float] | None = None) -> None:
        unknown = set(crash or {}) - POINTS
        if unknown:
            raise ValueError(f"unknown crash points {sorted(unknown)}; known: {sorted(POINTS)}")
        self._crash = dict(crash or {})

    def hit(self, point: str) -> None:
        probability = self._crash.get(point, 0.0)
        if probability and random.random() < probability:  # noqa: S311
            os.kill(os.getpid(), signal.SIGKILL)


NO_FAULTS = Faults()
