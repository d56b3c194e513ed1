"""PV-RNN configuration: dataclasses read from / written to TOML.

Layer 1 (index 0) is nearest the output. Per layer: ``d`` deterministic units, ``z``
stochastic units, ``tau`` time constant (steps), ``w`` meta-prior (KL weight). ``beta``
weights the KL at the first step (prior N(0, I) there). ``[er]`` holds the error
regression defaults used by ``pvrnn predict`` and the workbench.
"""
from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from engine.jobs import InputError


@dataclass
class LayerConfig:
    d: int = 40
    z: int = 4
    tau: float = 2.0
    w: float = 1e-2


@dataclass
class ERConfig:
    window: int = 15
    iterations: int = 15
    lr: float = 0.1
    horizon: int = 10


@dataclass
class Config:
    layers: list[LayerConfig] = field(default_factory=lambda: [
        LayerConfig(d=40, z=4, tau=2.0, w=1e-2), LayerConfig(d=10, z=1, tau=10.0, w=1e-2)])
    beta: float = 1e-3
    epochs: int = 3000
    lr: float = 1e-3
    seed: int = 1
    clip: float = 1.0          # global gradient-norm clip during training
    checkpoint_every: int = 100  # epochs between checkpoints
    er: ERConfig = field(default_factory=ERConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "configuration") -> "Config":
        """Build from a TOML-like dict: unknown keys and wrong types raise one InputError."""
        if not isinstance(d, dict):
            raise InputError(f"{source} is not a table of settings.")
        d = dict(d)
        layers = d.pop("layers", [asdict(x) for x in cls().layers])
        if not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
            raise InputError(f"{source}: 'layers' must be a list of [[layers]] tables.")
        layers = [_scalars(LayerConfig, lay, f"[[layers]] {i}", source)
                  for i, lay in enumerate(layers, 1)]
        er = d.pop("er", {})
        if not isinstance(er, dict):
            raise InputError(f"{source}: 'er' must be an [er] table, not {type(er).__name__}.")
        er = _scalars(ERConfig, er, "[er]", source)
        cfg = _scalars(cls, d, "the top level", source, layers=layers, er=er)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "configuration") -> None:
        problems = []
        if not self.layers:
            problems.append("it needs at least one layer")
        for i, lay in enumerate(self.layers, 1):
            if lay.d < 1 or lay.z < 1:
                problems.append(f"layer {i} needs d >= 1 and z >= 1")
            if lay.tau < 1:
                problems.append(f"layer {i} needs tau >= 1")
            if lay.w < 0:
                problems.append(f"layer {i} needs w >= 0")
        if self.epochs < 0 or self.lr <= 0 or self.beta < 0:
            problems.append("epochs >= 0, lr > 0 and beta >= 0 are required")
        if self.er.window < 1 or self.er.iterations < 0 or self.er.lr <= 0 or self.er.horizon < 1:
            problems.append("[er] needs window >= 1, iterations >= 0, lr > 0, horizon >= 1")
        if problems:
            raise InputError(f"{source}: {'; '.join(problems)}.")

    def to_toml(self) -> str:
        out = [f"seed = {self.seed}", f"epochs = {self.epochs}", f"lr = {self.lr!r}",
               f"beta = {self.beta!r}", f"clip = {self.clip!r}",
               f"checkpoint_every = {self.checkpoint_every}", ""]
        for i, lay in enumerate(self.layers, 1):
            out += [f"[[layers]]  # layer {i}" + (" (nearest the output)" if i == 1 else ""),
                    f"d = {lay.d}", f"z = {lay.z}", f"tau = {float(lay.tau)!r}",
                    f"w = {lay.w!r}", ""]
        e = self.er
        out += ["[er]  # error regression defaults", f"window = {e.window}",
                f"iterations = {e.iterations}", f"lr = {e.lr!r}", f"horizon = {e.horizon}", ""]
        return "\n".join(out)


def _scalars(kind, table: dict, where: str, source: str, **given):
    """``kind(**table)`` for a dataclass of int / float scalars, checking names and types:
    ints must be integers (4.7 is refused, not truncated), floats may be ints or floats."""
    scalar = {f.name: type(getattr(kind(), f.name)) for f in fields(kind) if f.name not in given}
    unknown = sorted(set(table) - set(scalar))
    if unknown:
        raise InputError(f"{source} has unknown setting(s) {', '.join(map(repr, unknown))} in "
                         f"{where} (known: {', '.join(sorted(set(scalar) | set(given)))}).")
    kw = {}
    for k, v in table.items():
        want = scalar[k]
        ok = (isinstance(v, int) and not isinstance(v, bool)
              or want is float and isinstance(v, float))
        if not ok:
            shown = "a table" if isinstance(v, (dict, list)) else repr(v)
            raise InputError(f"{source}: '{k}' in {where} must be "
                             f"{'an integer' if want is int else 'a number'}, not {shown}.")
        kw[k] = want(v)
    return kind(**kw, **given)


def load_config(path: str | Path | None) -> Config:
    """Read a TOML file (missing keys take the defaults); ``None`` gives the defaults."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"Configuration file '{path}' does not exist.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"Configuration file '{path}' is not valid TOML: {err}.") from None
    return Config.from_dict(data, source=f"Configuration file '{path}'")
