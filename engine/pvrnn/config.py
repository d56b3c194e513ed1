"""PV-RNN configuration: dataclasses read from / written to TOML, and the ranges every
setting is checked against (configuration files, the command line and the workbench).

Layer 1 (index 0) is nearest the output. Per layer: ``d`` deterministic units, ``z``
stochastic units, ``tau`` time constant (steps), ``w`` meta-prior (KL weight). ``beta``
weights the KL at the first step (prior N(0, I) there). ``[er]`` holds the error
regression defaults (:class:`ERSettings`) used by ``pvrnn predict`` and the workbench.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from engine.jobs import InputError
from engine.tomlconf import parse_toml, read_toml

# name -> (low, high, low is exclusive): every numeric setting's allowed range.
LIMITS = {
    "d": (1, 4096, False), "z": (1, 1024, False), "tau": (1.0, 1e6, False),
    "w": (0.0, 1e3, False), "beta": (0.0, 1e3, False), "epochs": (0, 10_000_000, False),
    "lr": (0.0, 10.0, True), "seed": (0, 2 ** 32 - 1, False), "clip": (0.0, 1e6, False),
    "checkpoint_every": (1, 10_000_000, False),
    # error regression
    "window": (1, 1000, False), "iterations": (0, 100_000, False), "er_lr": (0.0, 10.0, True),
    "horizon": (1, 1000, False), "meta_prior": (0.0, 1e3, False), "chunk": (1, 10_000_000, False),
}


def out_of_range(key: str, value, name: str | None = None) -> str | None:
    """A phrase saying why ``value`` is not allowed for setting ``key`` (see LIMITS), or
    None when it is. ``name`` is how the setting is shown ("--lr", "lr in [er]")."""
    lo, hi, open_lo = LIMITS[key]
    name = name or key
    kind = "an integer" if isinstance(lo, int) else "a number"
    if isinstance(lo, int):
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{name} must be {kind}, not {value!r}"
    elif not math.isfinite(value):
        return f"{name} must be a finite number, not {value!r}"
    if value < lo or (open_lo and value == lo) or value > hi:
        return (f"{name} must be {'>' if open_lo else '>='} {_num(lo)} and <= {_num(hi)}, "
                f"not {_num(value)}")
    return None


def _num(x) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


@dataclass
class LayerConfig:
    d: int = 40
    z: int = 4
    tau: float = 2.0
    w: float = 1e-2


@dataclass
class ERSettings:
    """Error-regression settings: the one definition of their defaults (CLI, GUI, engine).
    ``meta_prior`` None keeps each layer's trained w."""
    window: int = 15         # steps in the sliding window
    iterations: int = 15     # Adam updates per step
    lr: float = 0.1          # Adam learning rate
    horizon: int = 10        # steps predicted ahead
    meta_prior: float | None = None

    def problems(self, names: dict[str, str] | None = None) -> list[str]:
        """Phrases for every setting out of range; ``names`` maps field -> shown name."""
        names = names or {}
        out = []
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            key = "er_lr" if f.name == "lr" else f.name
            p = out_of_range(key, v, names.get(f.name, f.name))
            if p:
                out.append(p)
        return out


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
    er: ERSettings = field(default_factory=ERSettings)

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
        er = _scalars(ERSettings, er, "[er]", source)
        cfg = _scalars(cls, d, "the top level", source, layers=layers, er=er)
        cfg.validate(source)
        return cfg

    def validate(self, source: str = "configuration") -> None:
        """Raise one InputError listing every setting out of range (NaN and inf included)."""
        problems = [] if self.layers else ["it needs at least one layer"]
        for i, lay in enumerate(self.layers, 1):
            problems += [p for k in ("d", "z", "tau", "w")
                         if (p := out_of_range(k, getattr(lay, k), f"{k} of layer {i}"))]
        problems += [p for k in ("epochs", "lr", "beta", "seed", "clip", "checkpoint_every")
                     if (p := out_of_range(k, getattr(self, k)))]
        problems += self.er.problems({f.name: f"{f.name} in [er]" for f in fields(ERSettings)})
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
                f"iterations = {e.iterations}", f"lr = {e.lr!r}", f"horizon = {e.horizon}"]
        if e.meta_prior is not None:
            out.append(f"meta_prior = {float(e.meta_prior)!r}")
        return "\n".join(out + [""])


def _scalars(kind, table: dict, where: str, source: str, **given):
    """``kind(**table)`` for a dataclass of int / float scalars, checking names and types:
    ints must be integers (4.7 is refused, not truncated), floats may be ints or floats
    (a field whose default is None is a float)."""
    defaults = kind()
    scalar = {f.name: (float if getattr(defaults, f.name) is None
                       else type(getattr(defaults, f.name)))
              for f in fields(kind) if f.name not in given}
    unknown = sorted(set(table) - set(scalar))
    if unknown:
        raise InputError(f"{source} has unknown setting(s) {', '.join(map(repr, unknown))} in "
                         f"{where} (known: {', '.join(sorted(set(scalar) | set(given)))}).")
    kw = {}
    for k, v in table.items():
        want = scalar[k]
        if v is None and getattr(defaults, k) is None:  # a stored "not set" (checkpoints)
            kw[k] = None
            continue
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
    return Config.from_dict(read_toml(path), source=f"The configuration file '{path}'")


def parse_config(text: str, source: str = "The configuration") -> Config:
    """TOML text (the workbench's editor) -> Config, or one InputError naming ``source``."""
    return Config.from_dict(parse_toml(text, source), source=source)
