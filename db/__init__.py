"""Persistence: atomic files, SQLite catalogs, array shards, FAISS indexes. Imports neither engine nor Qt."""
