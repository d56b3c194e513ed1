"""Plain-Python view models with events (no Qt here): viewers subscribe, widgets bind.

Like napari's ``components``: the single source of truth for the shared cursor lives
in an object any view can observe, so linking views is subscribing them to one model.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


class Event:
    """A list of callbacks: ``connect(fn)``, ``disconnect(fn)``, ``emit(*args)``."""

    def __init__(self) -> None:
        self._callbacks: list[Callable] = []

    def connect(self, fn: Callable) -> Callable:
        if fn not in self._callbacks:
            self._callbacks.append(fn)
        return fn

    def disconnect(self, fn: Callable) -> None:
        if fn in self._callbacks:
            self._callbacks.remove(fn)

    def emit(self, *args) -> None:
        for fn in list(self._callbacks):
            fn(*args)


class Cursor3D:
    """The shared 3-D cursor: a voxel index (i, j, k) into the displayed (RAS-reoriented)
    volume of shape ``shape``. ``changed`` fires with the new index when it moves."""

    def __init__(self, shape: tuple[int, int, int] = (1, 1, 1)) -> None:
        self.shape = tuple(int(s) for s in shape)
        self._ijk = tuple(s // 2 for s in self.shape)
        self.changed = Event()

    @property
    def ijk(self) -> tuple[int, int, int]:
        return self._ijk

    def set_shape(self, shape) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.set_ijk(tuple(s // 2 for s in self.shape), force=True)

    def set_ijk(self, ijk, force: bool = False) -> None:
        new = tuple(int(np.clip(round(float(v)), 0, s - 1)) for v, s in zip(ijk, self.shape))
        if new != self._ijk or force:
            self._ijk = new
            self.changed.emit(new)

    def set_axis(self, axis: int, value: int) -> None:
        ijk = list(self._ijk)
        ijk[axis] = value
        self.set_ijk(ijk)


class Timeline:
    """The shared time cursor for sequences and video: an index in [0, length)."""

    def __init__(self, length: int = 1) -> None:
        self.length = max(1, int(length))
        self._index = 0
        self.changed = Event()

    @property
    def index(self) -> int:
        return self._index

    def set_length(self, length: int) -> None:
        self.length = max(1, int(length))
        self.set_index(min(self._index, self.length - 1), force=True)

    def set_index(self, index: int, force: bool = False) -> None:
        new = int(np.clip(int(index), 0, self.length - 1))
        if new != self._index or force:
            self._index = new
            self.changed.emit(new)

    def step(self, delta: int = 1, wrap: bool = True) -> None:
        n = self._index + delta
        self.set_index(n % self.length if wrap else n)
