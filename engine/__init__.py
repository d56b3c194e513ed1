"""The science: pure Python + numpy/torch. Never imports Qt."""

from db.store import program_version

__version__ = program_version()
