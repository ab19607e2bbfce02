"""Embeddings: backends (sentence-transformers, vLLM), the worker subprocess, validation,
lake reads/writes and the embed-gaps runner."""

from papersys.embedding.runner import ModelRun, embed_gaps

__all__ = ["ModelRun", "embed_gaps"]
