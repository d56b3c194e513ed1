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


class Layer:
    """One image overlay of a volume viewer (like a napari layer), plain Python.

    ``data`` (X, Y, Z) on the displayed grid; ``kind`` "labels" (integer values, ``colors``
    {value: (r, g, b)}, ``names`` {value: text}) or "scalar" (``colors`` a colour-map name,
    ``levels`` (lo, hi): values <= lo transparent); ``opacity`` in [0, 1]; ``visible``.
    Assigning ``data``, ``colors``, ``names``, ``opacity``, ``visible`` or ``levels`` fires
    ``changed(layer, what)`` with ``what`` the attribute name (once per real change).
    """

    _EVENTS = ("data", "colors", "names", "opacity", "visible", "levels")

    def __init__(self, name: str, data, kind: str = "labels", colors=None, opacity: float = 0.5,
                 visible: bool = True, levels=None, names=None) -> None:
        if kind not in ("labels", "scalar"):
            raise ValueError("kind must be 'labels' or 'scalar'")
        self.changed = Event()
        self.name, self.kind = name, kind
        self.data = np.asarray(data)
        if kind == "scalar" and levels is None:
            levels = (float(np.min(self.data)), float(np.max(self.data)))
        self.levels = None if levels is None else tuple(float(v) for v in levels)
        self.colors = colors if colors is not None else ("inferno" if kind == "scalar" else None)
        self.names = dict(names or {})
        self.opacity = float(np.clip(opacity, 0.0, 1.0))
        self.visible = bool(visible)

    def __setattr__(self, key, value) -> None:
        if key in self._EVENTS and "changed" in self.__dict__:
            if key == "opacity":
                value = float(np.clip(value, 0.0, 1.0))
            elif key == "visible":
                value = bool(value)
            elif key == "levels" and value is not None:
                value = tuple(float(v) for v in value)
            old = self.__dict__.get(key, None)
            same = old is value if key == "data" else old == value
            object.__setattr__(self, key, value)
            if not same:
                self.changed.emit(self, key)
        else:
            object.__setattr__(self, key, value)

    def value_text(self, ijk) -> str:
        """The layer's value at voxel ``ijk`` as text (label name or number)."""
        value = self.data[tuple(ijk)].item()
        if self.kind == "labels":
            return self.names.get(int(value), f"label {int(value)}")
        return f"{value:.3g}"


class LayerList:
    """Ordered overlays by name (first drawn lowest); a mapping ``name -> Layer``.

    Events: ``inserted(layer)``, ``removed(layer)``, ``changed(layer, what)`` (any layer's
    attribute change, re-emitted), ``reordered()``. Adding a layer under an existing name
    replaces it in place (same drawing order)."""

    def __init__(self) -> None:
        self._layers: dict[str, Layer] = {}
        self.inserted, self.removed, self.changed, self.reordered = Event(), Event(), Event(), Event()

    def __contains__(self, name) -> bool:
        return name in self._layers

    def __getitem__(self, name) -> Layer:
        return self._layers[name]

    def __iter__(self):
        return iter(list(self._layers))

    def __len__(self) -> int:
        return len(self._layers)

    def get(self, name, default=None):
        return self._layers.get(name, default)

    def items(self):
        return list(self._layers.items())

    def values(self):
        return list(self._layers.values())

    def add(self, layer: Layer) -> Layer:
        names = list(self._layers)
        old = self._layers.pop(layer.name, None)
        if old is not None:
            old.changed.disconnect(self.changed.emit)
            self.removed.emit(old)
            names = [n for n in names if n in self._layers or n == layer.name]
        self._layers[layer.name] = layer
        if old is not None:    # same drawing order as the layer it replaces
            self._layers = {n: self._layers[n] for n in names if n in self._layers}
        layer.changed.connect(self.changed.emit)
        self.inserted.emit(layer)
        return layer

    def remove(self, name) -> None:
        layer = self._layers.pop(name, None)
        if layer is not None:
            layer.changed.disconnect(self.changed.emit)
            self.removed.emit(layer)

    def move_to_top(self, name) -> None:
        """Draw ``name`` above every other layer."""
        if name in self._layers:
            self._layers[name] = self._layers.pop(name)
            self.reordered.emit()

    def clear(self) -> None:
        for name in list(self._layers):
            self.remove(name)
