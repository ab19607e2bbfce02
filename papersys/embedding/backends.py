"""Encoders: turn texts into vectors, in the order given.

``SentenceTransformerEncoder`` runs sentence-transformers with token-budget batching (texts
sorted by token length, each batch cut so padded tokens stay under the budget) and bf16
autocast on CPUs that compute bf16 natively. ``VllmEncoder`` runs vLLM's pooling runner; it is
only ever built inside the embedding worker subprocess (see ``worker.py``), so ``vllm`` and
CUDA are never imported in the parent.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from papersys.config import EmbeddingModelConfig
from papersys.embedding.models import resolve_device, resolve_dtype, resolve_model_source
from papersys.errors import ConfigError, PapersysError


class EncoderError(PapersysError):
    """The model could not be loaded or failed while encoding."""


@dataclass(frozen=True)
class EncoderInfo:
    backend: str
    source: str
    device: str
    dtype: str


class Encoder(Protocol):
    info: EncoderInfo

    def encode(self, texts: Sequence[str]) -> np.ndarray | list[np.ndarray]:
        """Vectors for ``texts``, same order (ragged list only if the model misbehaves)."""
        ...

    def close(self) -> None: ...


def _normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    # Zero vectors stay zero (and are rejected by validation) instead of becoming NaN.
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, vectors / np.where(norms > 0, norms, 1.0), vectors)


def plan_batches(
    lengths: Sequence[int], batch_size: int, token_budget: int | None
) -> list[list[int]]:
    """Group positions longest-first so each batch's padded size (count x longest) stays
    within ``token_budget`` (and at most ``batch_size`` texts when no budget is set)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    i = 0
    while i < len(order):
        longest = max(1, lengths[order[i]])
        n = max(1, token_budget // longest) if token_budget else batch_size
        batches.append(order[i : i + n])
        i += n
    return batches


class SentenceTransformerEncoder:
    """sentence-transformers model on cpu/cuda/mps, batched by token budget."""

    def __init__(self, config: EmbeddingModelConfig) -> None:
        try:
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise ConfigError(
                f"backend 'sentence_transformers' needs sentence-transformers and torch: {exc}"
            ) from None
        self._torch = torch
        self.config = config
        source = resolve_model_source(config)
        device = resolve_device(config.device)
        dtype = resolve_dtype(config.dtype, device)
        hf_logging.disable_progress_bar()  # the caller renders progress
        try:
            self.model = SentenceTransformer(source, device=device)
        except Exception as exc:
            raise EncoderError(
                f"cannot load embedding model {config.model} ({source}): {_first_line(exc)}; "
                "check the model id/path (set HF_HUB_OFFLINE=0 to allow downloads)"
            ) from None
        self.model.max_seq_length = min(config.max_length, self.model.max_seq_length or 10**9)
        self.model.eval()
        torch_dtype = getattr(torch, dtype)
        # On GPUs the weights themselves go to half precision; on CPU only matmuls run in bf16
        # (autocast) so layer norms and pooling stay in fp32.
        self._autocast = device == "cpu" and dtype == "bfloat16"
        if device != "cpu" and dtype != "float32":
            self.model.to(torch_dtype)
        self.info = EncoderInfo("sentence_transformers", source, device, dtype)

    def _preprocess(self, texts: list[str]) -> dict[str, Any]:
        # sentence-transformers >= 6 calls it preprocess; older releases tokenize.
        method = getattr(self.model, "preprocess", None) or self.model.tokenize
        return method(texts)

    def _dimension(self) -> int | None:
        method = getattr(self.model, "get_embedding_dimension", None)
        method = method or self.model.get_sentence_embedding_dimension
        return method()

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        tokenizer = self.model.tokenizer
        encoded = tokenizer(
            list(texts),
            truncation=True,
            max_length=self.model.max_seq_length,
            add_special_tokens=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return [len(ids) for ids in encoded["input_ids"]]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        prompt = self.config.prompt
        inputs = [prompt + t for t in texts] if prompt else list(texts)
        dim = self._dimension() or self.config.dim
        out = np.zeros((len(inputs), dim), dtype=np.float32)
        if not inputs:
            return out
        batches = plan_batches(
            self.token_lengths(inputs), self.config.batch_size, self.config.token_budget
        )
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if self._autocast
            else contextlib.nullcontext()
        )
        device = self.model.device
        with torch.inference_mode(), autocast:
            for batch in batches:
                features = self._preprocess([inputs[i] for i in batch])
                features = {
                    k: v.to(device) if isinstance(v, torch.Tensor) else v
                    for k, v in features.items()
                }
                embedded = self.model(features)["sentence_embedding"].float()
                if self.config.normalize:
                    embedded = torch.nn.functional.normalize(embedded, p=2, dim=1)
                out[batch] = embedded.cpu().numpy()
        return out

    def close(self) -> None:
        del self.model


class VllmEncoder:
    """vLLM pooling runner. Build it only inside the worker subprocess."""

    def __init__(self, config: EmbeddingModelConfig) -> None:
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
        try:
            from vllm import LLM
        except ImportError:
            raise ConfigError(
                "backend 'vllm' needs vLLM: pip install 'papersys[vllm]' (on a CUDA machine)"
            ) from None
        self.config = config
        source = resolve_model_source(config)
        kwargs: dict[str, Any] = {
            "model": source,
            "dtype": "auto" if config.dtype == "auto" else config.dtype,
            "max_model_len": config.max_length,
        }
        try:
            try:
                self.llm = LLM(runner="pooling", **kwargs)
            except TypeError:  # vLLM < 0.10 names it task="embed"
                self.llm = LLM(task="embed", **kwargs)
        except (ValueError, RuntimeError, OSError) as exc:
            raise EncoderError(
                f"vLLM cannot load {config.model} ({source}): {_first_line(exc)}"
            ) from None
        self.info = EncoderInfo("vllm", source, "cuda", config.dtype)

    def encode(self, texts: Sequence[str]) -> np.ndarray | list[np.ndarray]:
        prompt = self.config.prompt
        inputs = [prompt + t for t in texts] if prompt else list(texts)
        if not inputs:
            return np.zeros((0, self.config.dim), dtype=np.float32)
        try:
            outputs = self.llm.embed(
                inputs, truncate_prompt_tokens=self.config.max_length, use_tqdm=False
            )
        except TypeError:  # older vLLM: no truncation argument
            outputs = self.llm.embed(inputs, use_tqdm=False)
        vectors = [np.asarray(o.outputs.embedding, dtype=np.float32) for o in outputs]
        if len({v.shape for v in vectors}) != 1:
            return vectors  # validation reports the odd ones by id
        stacked = np.stack(vectors)
        return _normalize(stacked) if self.config.normalize else stacked

    def close(self) -> None:
        del self.llm


def build_encoder(config: EmbeddingModelConfig) -> Encoder:
    """The in-process encoder for ``config.backend``."""
    if config.backend == "vllm":
        return VllmEncoder(config)
    return SentenceTransformerEncoder(config)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
