"""Run an encoder in ONE spawned subprocess for a whole run, fed chunks over a queue.

vLLM (and CUDA) must never be initialised in the parent: the parent streams gaps from the
lake and writes results, the worker owns the model. The start method is ``spawn`` (no fork
of a process holding DuckDB/threads), ``VLLM_WORKER_MULTIPROC_METHOD=spawn`` is set for
vLLM's own workers, and the worker ignores SIGINT so Ctrl-C reaches only the parent, which
then shuts the worker down in order (stop message, join, terminate as a last resort).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import signal
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from papersys.config import EmbeddingModelConfig
from papersys.embedding.backends import EncoderError, EncoderInfo, build_encoder

_POLL_SECONDS = 0.5
log = logging.getLogger(__name__)


def _worker_main(config_json: str, requests: Any, results: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        encoder = build_encoder(EmbeddingModelConfig.model_validate_json(config_json))
    except BaseException as exc:
        log.exception("embedding worker could not load the model")
        results.put(("error", -1, _describe(exc)))
        return
    results.put(("ready", -1, encoder.info))
    parent = mp.parent_process()
    try:
        while True:
            try:
                message = requests.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                # A parent killed with SIGKILL cannot say goodbye: do not outlive it.
                if parent is not None and not parent.is_alive():
                    break
                continue
            if message is None:
                break
            seq, texts = message
            try:
                vectors = encoder.encode(texts)
            except BaseException as exc:
                log.exception("embedding worker failed on chunk %d", seq)
                results.put(("error", seq, _describe(exc)))
                break
            results.put(("ok", seq, vectors))
    finally:
        encoder.close()


def _describe(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class IsolatedEncoder:
    """Encoder proxy whose model lives in a spawned subprocess.

    ``submit`` may run ahead of ``receive`` (the parent reads and writes the lake while the
    worker encodes the next chunk); results come back in submission order.
    """

    def __init__(self, config: EmbeddingModelConfig, *, load_timeout: float = 1800.0) -> None:
        self.config = config
        os.environ["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"
        ctx = mp.get_context("spawn")
        self._requests = ctx.Queue()
        self._results = ctx.Queue()
        # Not a daemon: vLLM starts processes of its own, which daemons may not do.
        self._process = ctx.Process(
            target=_worker_main,
            args=(config.model_dump_json(), self._requests, self._results),
            name=f"papersys-embed-{config.backend}",
        )
        self._process.start()
        self._next_seq = 0
        self._pending: list[int] = []
        self._closed = False
        try:
            kind, _, payload = self._get(load_timeout, "loading the model")
        except BaseException:
            self.close()
            raise
        if kind != "ready":
            self.close()
            raise EncoderError(f"embedding worker could not load {config.model}: {payload}")
        self.info: EncoderInfo = payload

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def _get(self, timeout: float, doing: str) -> tuple[str, int, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._results.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if not self._process.is_alive():
                    raise EncoderError(
                        f"embedding worker for {self.config.model} died while {doing} "
                        f"(exit code {self._process.exitcode})"
                    ) from None
                if time.monotonic() > deadline:
                    raise EncoderError(
                        f"embedding worker for {self.config.model} gave no answer in "
                        f"{timeout:.0f}s while {doing}"
                    ) from None

    def submit(self, texts: Sequence[str]) -> int:
        if self._closed:
            raise EncoderError("embedding worker is already shut down")
        seq = self._next_seq
        self._next_seq += 1
        self._requests.put((seq, list(texts)))
        self._pending.append(seq)
        return seq

    def receive(self, timeout: float = 3600.0) -> np.ndarray | list[np.ndarray]:
        if not self._pending:
            raise EncoderError("no chunk is being encoded")
        kind, seq, payload = self._get(timeout, "encoding")
        if kind == "error":
            raise EncoderError(f"embedding worker failed on {self.config.model}: {payload}")
        expected = self._pending.pop(0)
        if seq != expected:  # the protocol is FIFO; anything else is a bug worth stopping on
            raise EncoderError(f"embedding worker answered chunk {seq}, expected {expected}")
        return payload

    def encode(self, texts: Sequence[str]) -> np.ndarray | list[np.ndarray]:
        self.submit(texts)
        return self.receive()

    def close(self, timeout: float = 30.0) -> None:
        """Ask the worker to stop, wait for it, and only then force it."""
        if self._closed:
            return
        self._closed = True
        if self._process.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self._requests.put(None)
            self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        for q in (self._requests, self._results):
            q.cancel_join_thread()
            q.close()

    def __enter__(self) -> IsolatedEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
