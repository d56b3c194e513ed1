"""One way to read TOML configuration: one error style for every area (InputError, one sentence)."""
from __future__ import annotations

import tomllib
from pathlib import Path

from engine.jobs import InputError


def parse_toml(text: str, source: str) -> dict:
    """TOML text -> dict; ``source`` names it in the message ("The configuration file 'x.toml'")."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{source} is not valid TOML ({err}).") from None


def read_toml(path: str | Path) -> dict:
    """Read a TOML file -> dict, or raise InputError naming the file and the problem."""
    path = Path(path)
    source = f"The configuration file '{path}'"
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise InputError(f"{source} does not exist.") from None
    except IsADirectoryError:
        raise InputError(f"{source} is a folder, not a file.") from None
    except UnicodeDecodeError:
        raise InputError(f"{source} is not UTF-8 text.") from None
    except OSError as err:
        raise InputError(f"{source} cannot be read ({err.strerror or err}).") from None
    return parse_toml(text, source)
