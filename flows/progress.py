"""Progress as events any number of listeners can show (a terminal bar, a Prefect artifact).

Tasks report; they never know who is listening.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class StageProgress:
    key: str
    label: str
    total: float
    completed: float = 0.0


Listener = Callable[[StageProgress], None]


class Progress:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._stages: dict[str, StageProgress] = {}
        self._lock = threading.Lock()

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def begin(self, key: str, label: str, total: float) -> None:
        self._emit(StageProgress(key, label, max(total, 1)), replace=True)

    def advance(self, key: str, amount: float = 1.0) -> None:
        with self._lock:
            stage = self._stages.get(key)
            if stage is None:
                return
            stage.completed = min(stage.total, stage.completed + amount)
        self._emit(stage)

    def fraction(self, key: str, fraction: float) -> None:
        with self._lock:
            stage = self._stages.get(key)
            if stage is None:
                return
            stage.completed = stage.total * max(0.0, min(1.0, fraction))
        self._emit(stage)

    def _emit(self, stage: StageProgress, replace: bool = False) -> None:
        if replace:
            with self._lock:
                self._stages[stage.key] = stage
        for listener in list(self._listeners):
            listener(stage)


PROGRESS = Progress()
