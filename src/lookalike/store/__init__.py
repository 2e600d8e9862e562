"""Persistence: the SQLite catalog (source of truth, vectors included) and the FAISS structure derived from it."""
