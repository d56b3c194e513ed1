"""Persistence: atomic files, SQLite catalogs, array shards, index files, hashing.
Imports neither engine nor Qt, and knows no science."""
