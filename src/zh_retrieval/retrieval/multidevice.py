"""Encoding spread over several devices: one worker process per GPU, each holding its own model copy.

Batches are formed once (longest texts first, as `encode` does) and handed out a few at a time,
so a device that finishes early takes the next group instead of waiting for the slowest one;
the rows come back in input order. With one device, plain `encode` in this process is faster.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from zh_retrieval.retrieval.encode import Embedder, encode, length_sorted_batches, load_embedder

_EMBEDDER: Embedder | None = None  # the worker process's model, on its own device


def _start_worker(model_dir: str, pooling: str, precision: str, devices: multiprocessing.Queue) -> None:
    global _EMBEDDER
    device = torch.device(devices.get())
    if device.type == "cpu":
        torch.set_num_threads(1)  # several CPU workers share the cores (used by the tests)
    _EMBEDDER = load_embedder(Path(model_dir), pooling, precision, device)


def _encode_group(task: tuple[list[list[str]], int]) -> list[np.ndarray]:
    batches, max_length = task
    assert _EMBEDDER is not None
    return [encode(_EMBEDDER, texts, max_length, batch_size=len(texts), desc="worker") for texts in batches]


class DevicePool:
    """`with DevicePool(model_dir, pooling, precision, ["cuda:0", "cuda:1"]) as pool: pool.encode(texts, 512)`."""

    def __init__(self, model_dir: Path, pooling: str, precision: str, devices: list[str]):
        context = multiprocessing.get_context("spawn")  # CUDA cannot be used in forked children
        queue = context.Queue()
        for device in devices:
            queue.put(device)
        self.devices = devices
        self.pool = context.Pool(len(devices), initializer=_start_worker,
                                 initargs=(str(model_dir), pooling, precision, queue))

    def __enter__(self) -> DevicePool:
        return self

    def __exit__(self, *exc) -> None:
        self.pool.terminate()
        self.pool.join()

    def encode(self, texts: list[str], max_length: int, batch_size: int = 32, desc: str = "encode",
               batches_per_task: int = 4) -> np.ndarray:
        batches = length_sorted_batches(texts, batch_size)
        groups = [batches[start : start + batches_per_task] for start in range(0, len(batches), batches_per_task)]
        tasks = [([[texts[i] for i in batch] for batch in group], max_length) for group in groups]
        out: np.ndarray | None = None
        progress = tqdm(total=len(batches), desc=f"{desc} ({len(self.devices)} devices)", unit="batch", mininterval=5)
        for group, vectors in zip(groups, self.pool.imap(_encode_group, tasks)):
            for batch, batch_vectors in zip(group, vectors):
                if out is None:
                    out = np.zeros((len(texts), batch_vectors.shape[1]), dtype=np.float32)
                out[batch] = batch_vectors
            progress.update(len(group))
        progress.close()
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)
