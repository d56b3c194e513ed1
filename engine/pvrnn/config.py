"""PV-RNN configuration: dataclasses read from / written to TOML.

Layer 1 (index 0) is nearest the output. Per layer: ``d`` deterministic units, ``z``
stochastic units, ``tau`` time constant (steps), ``w`` meta-prior (KL weight). ``beta``
weights the KL at the first step (prior N(0, I) there). ``[er]`` holds the error
regression defaults used by ``pvrnn predict`` and the workbench.
"""
from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
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
        try:
            d = dict(d)
            layers = [LayerConfig(**{k: type(getattr(LayerConfig, k))(v) for k, v in lay.items()})
                      for lay in d.pop("layers", [asdict(x) for x in cls().layers])]
            er = ERConfig(**{k: type(getattr(ERConfig, k))(v) for k, v in d.pop("er", {}).items()})
            base = cls()
            kw = {k: type(getattr(base, k))(v) for k, v in d.items()}
            cfg = cls(layers=layers, er=er, **kw)
        except (TypeError, ValueError) as err:
            raise InputError(f"{source} has an invalid entry: {err}.") from None
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
