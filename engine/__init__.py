"""The science: pure Python + numpy/torch. Never imports Qt."""

from engine.version import program_version

__version__ = program_version()
