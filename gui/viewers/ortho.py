"""Linked orthogonal MRI viewer: axial, coronal and sagittal views sharing one 3-D cursor.

(Over 400 lines: the three views, their mouse bindings and the readout are one widget.)

The cursor is a plain-Python :class:`gui.models.Cursor3D` (voxel index into the displayed,
RAS+-reoriented grid); every view subscribes to it, so linking is sharing one cursor.

Public API (stable; other panels call it)::

    viewer = OrthoViewer(cursor=None)          # makes its own Cursor3D when None
    viewer.set_volume(volume)                  # engine.imaging.Volume (RAS+ data + affine)
    viewer.layers                              # gui.models.LayerList: the overlay model;
        # change a Layer (layer.opacity = 0.3, layer.visible = False, layer.data = ...,
        # layer.levels, layer.colors, layer.names) and the views follow (events)
    viewer.add_overlay(name, data, kind="labels"|"scalar", colors=None, opacity=0.5,
                       levels=None, names=None) -> Layer   # data (X, Y, Z) on the displayed grid;
        # labels: colors {label: (r, g, b)} (default BraTS colours), names from
        #         engine.imaging.labels; scalar: colors = a pyqtgraph colormap name
        #         (default "inferno"), levels (lo, hi); values <= lo are transparent
    viewer.set_overlay_opacity(name, a)        # shorthands for the Layer attributes
    viewer.set_overlay_visible(name, bool)
    viewer.remove_overlay(name)                # = viewer.layers.remove(name)
    viewer.add_coordinates("MNI", fn)          # readout also shows fn(RAS mm) (None: unknown)
    viewer.set_points(name, ijk, color=(0, 255, 255), size=4, slab=2)
        # ijk (n, 3) float voxel coords on the displayed grid; drawn in each view for points
        # within ``slab`` slices of its current slice; ijk None or empty removes the set
    viewer.set_levels(lo, hi) / viewer.levels / viewer.presets / viewer.apply_preset(name)
    viewer.set_radiological(True)              # patient left on screen right (default)
    viewer.render_views() -> QImage            # the same widget rendering as on screen
    viewer.save_png(path)                      # atomic write of render_views()
    signals: readout(str), levels_changed(float, float), overlays_changed(),
             radiological_changed(bool)

Mouse and keys in a view: left click/drag sets the cursor (all views follow); wheel, arrow
keys and Page Up/Down change that view's slice; Shift + left drag changes window (horizontal)
and level (vertical); right drag zooms; middle drag pans; double click maximizes the view
and back. Screen coordinates are millimetres (voxel index x voxel size), so anisotropic voxels
look right. Axial: i to screen left in radiological display (R on the left), A up; coronal: S
up; sagittal: anterior on the left, S up.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QImage, QTransform
from PySide6.QtWidgets import QGridLayout, QLabel, QSizePolicy, QWidget

from engine.imaging.labels import LABEL_NAMES
from gui.models import Cursor3D, Layer, LayerList
from gui.viewers import LABEL_COLORS

# view name -> (slice axis, horizontal axis, vertical axis) of the RAS+ volume
VIEWS = {"axial": (2, 0, 1), "coronal": (1, 0, 2), "sagittal": (0, 1, 2)}
AXIS_LETTERS = (("L", "R"), ("P", "A"), ("I", "S"))  # (negative end, positive end) of i, j, k
CURSOR_PEN = pg.mkPen((0, 220, 120, 170), width=1)
LETTER_STYLE = "color: #ffd54a; font-weight: bold; font-size: 13px; background: transparent;"
TITLE_STYLE = "color: #c8c8c8; font-size: 11px; background: transparent;"


def _label_lut(colors: dict) -> np.ndarray:
    """(256, 4) uint8 RGBA lookup: label value -> colour, 0 and unknown labels transparent."""
    lut = np.zeros((256, 4), np.uint8)
    for value, rgb in colors.items():
        if 0 < int(value) < 256:
            lut[int(value), :3] = rgb[:3]
            lut[int(value), 3] = 255
    return lut


def _scalar_lut(name: str) -> np.ndarray:
    cmap = pg.colormap.get(name)
    lut = cmap.getLookupTable(0.0, 1.0, 256, alpha=True)
    lut = np.asarray(lut, dtype=np.uint8).copy()
    lut[:, 3] = 255
    return lut


def layer_rgba(layer, lut: np.ndarray, plane: np.ndarray) -> np.ndarray:
    """(H, W) slice of ``layer.data`` -> (H, W, 4) uint8 through the layer's ``lut``."""
    if layer.kind == "labels":
        return lut[np.clip(plane, 0, 255).astype(np.intp)]
    lo, hi = layer.levels
    scaled = (plane.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1e-12))
    out = lut[np.clip(scaled, 0, 255).astype(np.intp)]
    out[plane <= lo, 3] = 0
    return out


def layer_lut(layer) -> np.ndarray:
    """(256, 4) uint8 lookup table of a layer: label colours, or its colour map."""
    if layer.kind == "labels":
        return _label_lut(layer.colors if layer.colors is not None else LABEL_COLORS)
    return _scalar_lut(layer.colors if isinstance(layer.colors, str) else "inferno")


class SliceViewBox(pg.ViewBox):
    """ViewBox with the viewer's mouse bindings (no default pan/zoom/menu)."""

    def __init__(self, view: "SliceView"):
        super().__init__(lockAspect=True, enableMenu=False, invertY=False)
        self.view = view
        self.setMouseEnabled(False, False)
        self._drag_levels = None

    def mouseClickEvent(self, ev):
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            if ev.double():
                self.view.viewer.toggle_maximize(self.view)
            else:
                self.view.set_cursor_from_scene(ev.scenePos())
        else:
            ev.ignore()

    def mouseDragEvent(self, ev, axis=None):
        button = ev.button()
        ev.accept()
        if button == Qt.MouseButton.LeftButton:
            mods = Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier
            if ev.modifiers() & mods:
                if ev.isStart() or self._drag_levels is None:
                    self._drag_levels = self.view.viewer.levels
                delta = ev.pos() - ev.buttonDownPos()
                self.view.viewer.window_level_drag(self._drag_levels, delta.x(), -delta.y())
                if ev.isFinish():
                    self._drag_levels = None
            else:
                self.view.set_cursor_from_scene(ev.scenePos())
        elif button == Qt.MouseButton.RightButton:
            dy = (ev.pos() - ev.lastPos()).y()
            factor = float(np.exp(dy * 0.005))  # drag up zooms in
            center = self.mapToView(ev.buttonDownPos())
            self.scaleBy((factor, factor), center=center)
        elif button == Qt.MouseButton.MiddleButton:
            shift = self.mapToView(ev.lastPos()) - self.mapToView(ev.pos())
            self.translateBy(t=shift)
        else:
            ev.ignore()

    def wheelEvent(self, ev, axis=None):
        delta = ev.delta() if hasattr(ev, "delta") else ev.angleDelta().y()
        if delta:
            self.view.step_slice(1 if delta > 0 else -1)
        ev.accept()


class SliceView(pg.GraphicsView):
    """One orthogonal view of the viewer's volume (axial, coronal or sagittal)."""

    def __init__(self, viewer: "OrthoViewer", name: str):
        super().__init__(background="k")
        self.viewer, self.name = viewer, name
        self.axis, self.h, self.v = VIEWS[name]
        self.slice = -1
        self.spacing = (1.0, 1.0)  # mm per voxel along (h, v)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(120, 120)
        self.vb = SliceViewBox(self)
        self.setCentralItem(self.vb)
        self.image = pg.ImageItem()
        self.vb.addItem(self.image)
        self.overlay_items: dict[str, pg.ImageItem] = {}
        self.point_items: dict[str, pg.ScatterPlotItem] = {}
        self.vline = pg.InfiniteLine(angle=90, movable=False, pen=CURSOR_PEN)
        self.hline = pg.InfiniteLine(angle=0, movable=False, pen=CURSOR_PEN)
        for line in (self.vline, self.hline):
            line.setZValue(50)
            self.vb.addItem(line, ignoreBounds=True)
        self.letters = {side: self._label(LETTER_STYLE)
                        for side in ("left", "right", "top", "bottom")}
        self.title = self._label(TITLE_STYLE)

    def _label(self, style: str) -> QLabel:
        label = QLabel(self)
        label.setStyleSheet(style)
        label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        return label

    # geometry -----------------------------------------------------------------------------
    def set_geometry(self, shape, spacing) -> None:
        self.spacing = (float(spacing[self.h]), float(spacing[self.v]))
        nh, nv = shape[self.h], shape[self.v]
        self.rect = QRectF(-0.5 * self.spacing[0], -0.5 * self.spacing[1],
                           nh * self.spacing[0], nv * self.spacing[1])
        for item in (self.image, *self.overlay_items.values()):
            self._place(item)
        self.slice = -1
        w, h = nh * self.spacing[0], nv * self.spacing[1]
        self.vb.setLimits(minXRange=8 * self.spacing[0], minYRange=8 * self.spacing[1],
                          maxXRange=4 * max(w, h), maxYRange=4 * max(w, h))
        self.reset_zoom()

    def _place(self, item: pg.ImageItem) -> None:
        """Pixel (col, row) of an image covers mm [col - 1/2, col + 1/2] x voxel size."""
        tr = QTransform()
        tr.translate(-0.5 * self.spacing[0], -0.5 * self.spacing[1])
        tr.scale(self.spacing[0], self.spacing[1])
        item.setTransform(tr)

    def reset_zoom(self) -> None:
        self.vb.setRange(rect=getattr(self, "rect", QRectF(0, 0, 1, 1)), padding=0.02)

    def set_flip(self, radiological: bool) -> None:
        """Horizontal direction on screen and the letters on the edges."""
        invert = radiological if self.name in ("axial", "coronal") else True
        self.vb.invertX(invert)
        neg, pos = AXIS_LETTERS[self.h]
        left, right = (pos, neg) if invert else (neg, pos)
        v_neg, v_pos = AXIS_LETTERS[self.v]
        for side, text in (("left", left), ("right", right), ("top", v_pos), ("bottom", v_neg)):
            self.letters[side].setText(text)
            self.letters[side].adjustSize()
        self._place_labels()

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        self._place_labels()

    def _place_labels(self) -> None:
        if not hasattr(self, "title"):  # pyqtgraph resizes during __init__
            return
        w, h = self.width(), self.height()
        lt = self.letters
        lt["left"].move(6, (h - lt["left"].height()) // 2)
        lt["right"].move(w - lt["right"].width() - 6, (h - lt["right"].height()) // 2)
        lt["top"].move((w - lt["top"].width()) // 2, 4)
        lt["bottom"].move((w - lt["bottom"].width()) // 2, h - lt["bottom"].height() - 4)
        self.title.move(6, 4)
        for label in (*lt.values(), self.title):
            label.raise_()

    # coordinates ----------------------------------------------------------------------------
    def plane_to_scene(self, h_index: float, v_index: float) -> QPointF:
        """Voxel indices (h, v) in this view -> scene position (for tests and overlays)."""
        return self.vb.mapViewToScene(QPointF(h_index * self.spacing[0], v_index * self.spacing[1]))

    def set_cursor_from_scene(self, scene_pos) -> None:
        p = self.vb.mapSceneToView(scene_pos)
        ijk = list(self.viewer.cursor.ijk)
        ijk[self.h] = int(round(p.x() / self.spacing[0]))
        ijk[self.v] = int(round(p.y() / self.spacing[1]))
        self.viewer.cursor.set_ijk(ijk)

    def step_slice(self, step: int) -> None:
        cursor = self.viewer.cursor
        cursor.set_axis(self.axis, cursor.ijk[self.axis] + step)

    def keyPressEvent(self, ev):
        key = ev.key()
        steps = {Qt.Key.Key_Up: 1, Qt.Key.Key_Right: 1, Qt.Key.Key_PageUp: 5,
                 Qt.Key.Key_Down: -1, Qt.Key.Key_Left: -1, Qt.Key.Key_PageDown: -5}
        if key in steps:
            self.step_slice(steps[key])
            ev.accept()
        elif key == Qt.Key.Key_Home:
            self.reset_zoom()
            ev.accept()
        else:
            super().keyPressEvent(ev)

    # drawing --------------------------------------------------------------------------------
    def plane(self, data: np.ndarray, index: int) -> np.ndarray:
        """(X, Y, Z) -> (rows = vertical axis, cols = horizontal axis) slice at ``index``."""
        return np.take(data, index, axis=self.axis).T

    def update_cursor(self, ijk, force: bool = False) -> None:
        viewer = self.viewer
        if viewer.volume is None:
            return
        s = ijk[self.axis]
        if s != self.slice or force:
            self.slice = s
            self.image.setImage(self.plane(viewer.volume.data, s), autoLevels=False,
                                levels=viewer.levels)
            for name in viewer.overlays:
                self.draw_overlay(name)
            for name in viewer.points:
                self.draw_points(name)
            n = viewer.volume.shape[self.axis]
            self.title.setText(f"{self.name}  {'ijk'[self.axis]} = {s} / {n - 1}")
            self.title.adjustSize()
        self.vline.setPos(ijk[self.h] * self.spacing[0])
        self.hline.setPos(ijk[self.v] * self.spacing[1])

    def draw_overlay(self, name: str) -> None:
        layer = self.viewer.layers[name]
        item = self.overlay_items.get(name)
        if item is None:
            item = pg.ImageItem()
            self.vb.addItem(item)
            self.overlay_items[name] = item
            self._place(item)
        item.setZValue(10 + list(self.viewer.layers).index(name))
        if self.slice >= 0:
            plane = self.plane(layer.data, self.slice)
            item.setImage(layer_rgba(layer, self.viewer.luts[name], plane), autoLevels=False,
                          levels=None)
        item.setOpacity(layer.opacity)
        item.setVisible(layer.visible)

    def remove_overlay(self, name: str) -> None:
        item = self.overlay_items.pop(name, None)
        if item is not None:
            self.vb.removeItem(item)

    def draw_points(self, name: str) -> None:
        pts, color, size, slab = self.viewer.points[name]
        item = self.point_items.get(name)
        if item is None:
            item = pg.ScatterPlotItem(pen=None)
            item.setZValue(40)
            self.vb.addItem(item)
            self.point_items[name] = item
        near = pts[np.abs(pts[:, self.axis] - self.slice) <= slab]
        item.setData(x=near[:, self.h] * self.spacing[0], y=near[:, self.v] * self.spacing[1],
                     size=size, brush=pg.mkBrush(*color), pen=None)

    def remove_points(self, name: str) -> None:
        item = self.point_items.pop(name, None)
        if item is not None:
            self.vb.removeItem(item)


class OrthoViewer(QWidget):
    """Axial, sagittal and coronal views plus an info cell, linked through one Cursor3D."""

    readout = Signal(str)
    levels_changed = Signal(float, float)
    overlays_changed = Signal()
    radiological_changed = Signal(bool)

    def __init__(self, cursor: Cursor3D | None = None, parent=None):
        super().__init__(parent)
        self.cursor = cursor if cursor is not None else Cursor3D()
        self.volume = None
        self.levels = (0.0, 1.0)
        self.presets: dict[str, tuple[float, float]] = {}
        self.layers = LayerList()      # the overlay model: panels change it, views follow
        self.overlays = self.layers    # the same object under its older name
        self.luts: dict[str, np.ndarray] = {}
        self.coordinates: dict[str, object] = {}  # extra readout spaces, see add_coordinates
        self.points: dict[str, tuple] = {}
        self.radiological = True
        self.maximized: SliceView | None = None
        self.views = {name: SliceView(self, name) for name in VIEWS}
        self.info = QLabel()
        self.info.setTextFormat(Qt.TextFormat.RichText)
        self.info.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.info.setWordWrap(True)
        self.info.setStyleSheet("background: #111; color: #ddd; padding: 8px; font-size: 12px;")
        self.info.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.info.setMinimumSize(120, 120)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(2)
        grid.addWidget(self.views["axial"], 0, 0)
        grid.addWidget(self.views["sagittal"], 0, 1)
        grid.addWidget(self.views["coronal"], 1, 0)
        grid.addWidget(self.info, 1, 1)
        self.readout_text = ""
        for view in self.views.values():
            view.set_flip(True)
        self.cursor.changed.connect(self._on_cursor)
        self.layers.inserted.connect(self._on_layer_inserted)
        self.layers.removed.connect(self._on_layer_removed)
        self.layers.changed.connect(self._on_layer_changed)
        self.layers.reordered.connect(self._on_layers_reordered)

    # volume ----------------------------------------------------------------------------------
    def set_volume(self, volume) -> None:
        """Show ``volume`` (RAS+ ``data`` (X, Y, Z) and ``affine``); overlays on another grid
        are removed; levels go to the "Auto (1-99 %)" preset."""
        self.volume = volume
        shape = tuple(int(s) for s in volume.data.shape)
        for name in [n for n, layer in self.layers.items() if layer.data.shape != shape]:
            self.layers.remove(name)
        self.points.clear()
        for view in self.views.values():
            for name in list(view.point_items):
                view.remove_points(name)
        self.presets = compute_presets(volume.data)
        self.levels = self.presets["Auto (1-99 %)"]
        spacing = np.sqrt((np.asarray(volume.affine)[:3, :3] ** 2).sum(axis=0))
        for view in self.views.values():
            view.set_geometry(shape, spacing)
        self.levels_changed.emit(*self.levels)
        if tuple(self.cursor.shape) != shape:
            self.cursor.set_shape(shape)  # fires changed -> _on_cursor
        else:
            self._on_cursor(self.cursor.ijk, force=True)

    def _on_cursor(self, ijk, force: bool = False) -> None:
        for view in self.views.values():
            view.update_cursor(ijk, force=force)
        self._update_readout()

    def slice_index(self, name: str) -> int:
        """The slice a view currently shows (index along its slice axis)."""
        return self.views[name].slice

    # window / level ----------------------------------------------------------------------------
    def set_levels(self, lo: float, hi: float) -> None:
        lo, hi = float(lo), float(hi)
        if hi <= lo:
            hi = lo + 1e-6
        if (lo, hi) == self.levels:
            return
        self.levels = (lo, hi)
        for view in self.views.values():
            view.image.setLevels(self.levels)
        self.levels_changed.emit(lo, hi)

    def apply_preset(self, name: str) -> None:
        self.set_levels(*self.presets[name])

    def window_level_drag(self, start_levels, dx_px: float, dy_px: float) -> None:
        """Drag from ``start_levels``: right widens the window, up raises the level."""
        full = self.presets.get("Full range", (0.0, 1.0))
        scale = (full[1] - full[0]) / 400.0
        lo, hi = start_levels
        width = max((hi - lo) + dx_px * scale, 1e-6)
        center = (hi + lo) / 2.0 + dy_px * scale
        self.set_levels(center - width / 2.0, center + width / 2.0)

    # overlays: the layer model drives the views ---------------------------------------------
    def add_overlay(self, name: str, data, kind: str = "labels", colors=None, opacity: float = 0.5,
                    levels=None, names=None) -> Layer:
        """Add (or replace) layer ``name``; ``data`` (X, Y, Z) on the displayed grid. Labels get
        the BraTS names unless ``names`` is given. Returns the Layer (change it to restyle)."""
        if kind == "labels" and names is None:
            names = dict(LABEL_NAMES)
        return self.layers.add(Layer(name, data, kind, colors=colors, opacity=opacity,
                                     levels=levels, names=names))

    def set_overlay_opacity(self, name: str, opacity: float) -> None:
        self.layers[name].opacity = opacity

    def set_overlay_visible(self, name: str, visible: bool) -> None:
        self.layers[name].visible = visible

    def remove_overlay(self, name: str) -> None:
        self.layers.remove(name)

    def _on_layer_inserted(self, layer) -> None:
        if self.volume is None or layer.data.shape != self.volume.data.shape:
            self.layers.remove(layer.name)
            raise ValueError(f"overlay '{layer.name}' has shape {layer.data.shape}, the volume "
                             f"{None if self.volume is None else self.volume.data.shape}")
        self.luts[layer.name] = layer_lut(layer)
        for view in self.views.values():
            view.draw_overlay(layer.name)
        self._update_readout()
        self.overlays_changed.emit()

    def _on_layer_removed(self, layer) -> None:
        self.luts.pop(layer.name, None)
        for view in self.views.values():
            view.remove_overlay(layer.name)
        self._update_readout()
        self.overlays_changed.emit()

    def _on_layer_changed(self, layer, what: str) -> None:
        if layer.name not in self.luts:   # rejected at insertion
            return
        if what == "colors":
            self.luts[layer.name] = layer_lut(layer)
        for view in self.views.values():
            item = view.overlay_items.get(layer.name)
            if item is None:
                continue
            if what == "opacity":
                item.setOpacity(layer.opacity)
            elif what == "visible":
                item.setVisible(layer.visible)
            elif what in ("data", "colors", "levels"):
                view.draw_overlay(layer.name)
        if what in ("visible", "data", "names", "colors"):
            self._update_readout()
        if what in ("opacity", "visible"):
            self.overlays_changed.emit()

    def _on_layers_reordered(self) -> None:
        for view in self.views.values():
            for name in self.layers:
                view.draw_overlay(name)

    def add_coordinates(self, name: str, ras_to_mm) -> None:
        """Show another space in the readout: ``ras_to_mm((3,) RAS mm of the displayed scan)``
        -> (3,) mm in space ``name`` (e.g. "MNI"), or None while unknown. None removes it."""
        if ras_to_mm is None:
            self.coordinates.pop(name, None)
        else:
            self.coordinates[name] = ras_to_mm
        self._update_readout()

    def set_points(self, name: str, ijk, color=(0, 255, 255), size: float = 4,
                   slab: float = 2) -> None:
        """Scatter ``ijk`` (n, 3) voxel coordinates; None or empty removes the set."""
        if ijk is None or len(ijk) == 0:
            self.points.pop(name, None)
            for view in self.views.values():
                view.remove_points(name)
            return
        pts = np.asarray(ijk, dtype=float).reshape(-1, 3)
        color = tuple(int(c) for c in color)
        self.points[name] = (pts, color, float(size), float(slab))
        for view in self.views.values():
            if view.slice >= 0:
                view.draw_points(name)

    # display options ----------------------------------------------------------------------------
    def set_radiological(self, radiological: bool) -> None:
        """True: patient left on screen right (radiological); False: neurological."""
        self.radiological = bool(radiological)
        for view in self.views.values():
            view.set_flip(self.radiological)
        self.radiological_changed.emit(self.radiological)

    def toggle_maximize(self, view: SliceView) -> None:
        """Show only ``view``; called again, show all views."""
        if self.maximized is None:
            self.maximized = view
            for other in (*self.views.values(), self.info):
                other.setVisible(other is view)
        else:
            self.maximized = None
            for other in (*self.views.values(), self.info):
                other.setVisible(True)

    # readout -------------------------------------------------------------------------------
    def readout_parts(self) -> dict:
        """What the cursor points at: file ijk, RAS mm, intensity, overlay values/names."""
        vol = self.volume
        ijk = self.cursor.ijk
        parts = {"ijk": ijk}
        if hasattr(vol, "ras_to_file_index"):
            parts["file_ijk"] = tuple(int(v) for v in vol.ras_to_file_index(ijk))
        else:
            parts["file_ijk"] = ijk
        aff = np.asarray(vol.affine)
        parts["ras_mm"] = tuple(float(v) for v in aff[:3, :3] @ np.asarray(ijk, float) + aff[:3, 3])
        parts["value"] = vol.data[ijk].item()
        parts["spaces"] = {}
        for name, fn in self.coordinates.items():
            xyz = fn(np.asarray(parts["ras_mm"]))
            parts["spaces"][name] = None if xyz is None else tuple(float(v) for v in xyz)
        parts["overlays"] = {name: layer.value_text(ijk) for name, layer in self.layers.items()
                             if layer.visible}
        return parts

    def _update_readout(self) -> None:
        if self.volume is None:
            return
        p = self.readout_parts()
        fi, fj, fk = p["file_ijk"]
        x, y, z = p["ras_mm"]
        value = p["value"]
        value_text = f"{value:.4g}" if isinstance(value, float) else str(value)
        text = (f"IJK (file) [{fi}, {fj}, {fk}]  RAS ({x:.1f}, {y:.1f}, {z:.1f}) mm  "
                f"value {value_text}")
        for name, xyz in p["spaces"].items():
            text += f"  {name} " + ("(not registered)" if xyz is None else
                                    "({:.1f}, {:.1f}, {:.1f}) mm".format(*xyz))
        for name, what in p["overlays"].items():
            text += f"  {name}: {what}"
        self.readout_text = text
        self._update_info(p)
        self.readout.emit(text)

    def _update_info(self, p) -> None:
        vol = self.volume
        name = getattr(vol, "name", "")
        lines = [f"<b>{name}</b>", f"IJK (file) {list(p['file_ijk'])}",
                 "RAS ({:.1f}, {:.1f}, {:.1f}) mm".format(*p["ras_mm"]),
                 *(f"{n} " + ("(not registered)" if xyz is None else
                              "({:.1f}, {:.1f}, {:.1f}) mm".format(*xyz))
                   for n, xyz in p["spaces"].items()),
                 f"value {p['value']:.4g}" if isinstance(p["value"], float)
                 else f"value {p['value']}",
                 f"window {self.levels[0]:.4g} .. {self.levels[1]:.4g}",
                 "radiological (L on right)" if self.radiological else "neurological (L on left)"]
        for oname, ov in self.layers.items():
            if ov.kind == "labels":
                swatches = []
                seen = set()
                lut = self.luts.get(oname)
                if lut is None:
                    continue
                for value in range(1, 256):
                    if lut[value, 3] and ov.names.get(value) not in seen:
                        seen.add(ov.names.get(value))
                        r, g, b = lut[value, :3]
                        swatches.append(f"<span style='color: rgb({r},{g},{b})'>&#9632;</span> "
                                        f"{ov.names.get(value, value)}")
                lines.append(f"<br><b>{oname}</b>: {p['overlays'].get(oname, 'hidden')}<br>"
                             + "<br>".join(swatches))
            else:
                lines.append(f"<br><b>{oname}</b>: {p['overlays'].get(oname, 'hidden')}")
        lines.append("<br><span style='color: #888'>click/drag: cursor &middot; wheel, arrows: "
                     "slice &middot; Shift+drag: window/level &middot; right drag: zoom &middot; "
                     "middle drag: pan &middot; double click: maximize</span>")
        self.info.setText("<br>".join(lines))

    # rendering -------------------------------------------------------------------------------
    def render_views(self) -> QImage:
        """Render the viewer (all visible views, letters, cursor lines) to a QImage via the
        same painting path as on screen; works offscreen."""
        return self.grab().toImage()

    def save_png(self, path) -> None:
        from db.atomic import write_with

        image = self.render_views()

        def write(tmp: str) -> None:
            if not image.save(tmp, "PNG"):
                raise OSError(f"could not write '{path}'")

        write_with(path, write)


def compute_presets(data: np.ndarray) -> dict[str, tuple[float, float]]:
    """Window presets from a strided subsample (fast on big volumes):
    Full range, Auto (1-99 %) of the foreground, Brain (20-99.5 %) of the foreground."""
    step = max(1, int(round((data.size / 2e6) ** (1 / 3))))
    sample = np.asarray(data[::step, ::step, ::step], dtype=np.float32).ravel()
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        hi = lo + 1.0
    fg = sample[sample > lo + 0.02 * (hi - lo)]
    if fg.size < 10:
        fg = sample
    p1, p99 = np.percentile(fg, [1, 99])
    b_lo, b_hi = np.percentile(fg, [20, 99.5])
    presets = {"Full range": (lo, hi), "Auto (1-99 %)": (float(p1), float(p99)),
               "Brain (20-99.5 %)": (float(b_lo), float(b_hi))}
    return {k: (a, b if b > a else a + 1e-6) for k, (a, b) in presets.items()}
