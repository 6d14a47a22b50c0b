"""Encoding spread over the processes torchrun starts, one per GPU, on one machine or several.

The same engine as training (`finetune` re-launches itself under torchrun), instead of a pool of
processes of our own. Every rank reads the same corpus and cuts the same passages; each chunk's
texts are batched once, longest first, exactly as `encode` batches them, and rank r encodes
batches r, r + world, r + 2 world, ...; rank 0 gathers the rows (over gloo, on the CPU, so any
machine and any number of nodes) and alone writes the output. Every batch is the batch it would
be in one process, padded alike, so the vectors are one process's (tests/test_embedding.py
compares the bytes).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from zh_retrieval.retrieval.encode import Embedder, batches_by_length, encode_batches, id_inputs

LAUNCHED = "LOCAL_RANK"  # set by torchrun in every process it starts


def launched_by_torchrun() -> bool:
    return LAUNCHED in os.environ


def torchrun_arguments(processes: int) -> list[str]:
    """torchrun's topology: processes here from params, nodes from the environment (NNODES, NODE_RANK, MASTER_*).

    On one machine torchrun picks a free rendezvous port itself; a multi-node job names the
    first node's address and a port every node can reach.
    """
    nodes = int(os.environ.get("NNODES", "1"))
    arguments = [f"--nproc_per_node={processes}", f"--nnodes={nodes}"]
    if nodes > 1:
        arguments += [f"--node_rank={os.environ.get('NODE_RANK', '0')}",
                      f"--master_addr={os.environ.get('MASTER_ADDR', '127.0.0.1')}",
                      f"--master_port={os.environ.get('MASTER_PORT', '29500')}"]
    else:
        arguments.append("--standalone")
    return arguments


def rank_device() -> torch.device:
    """This process's GPU (LOCAL_RANK's), or the CPU where there is none."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get(LAUNCHED, '0'))}")
    return torch.device("cpu")


def start() -> tuple[int, int]:
    """Join torchrun's process group (gloo: what passes between ranks is rows of vectors on the CPU);
    (rank, world size)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    return dist.get_rank(), dist.get_world_size()


class ShardedEncoder:
    """`encode` across the group: this rank's share of the batches, gathered on rank 0.

    Rank 0 gets every row; the other ranks get rows of width 0 (they write nothing)."""

    def __init__(self, embedder: Embedder, rank: int, world: int):
        self.embedder, self.rank, self.world = embedder, rank, world

    def encode(self, sequences: list[np.ndarray], lengths: list[int], batch_size: int, desc: str) -> np.ndarray:
        """`encode.encode_ids` of the sequences, this rank's batches only, all rows on rank 0."""
        import torch.distributed as dist

        batches = batches_by_length(lengths, batch_size)[self.rank :: self.world]
        rows = [i for batch in batches for i in batch]
        vectors = encode_batches(self.embedder, id_inputs(self.embedder, sequences), batches,
                                 f"{desc} [rank {self.rank}]")
        gathered: list | None = [None] * self.world if self.rank == 0 else None
        dist.gather_object((rows, vectors), gathered, dst=0)
        if gathered is None:
            return np.zeros((len(sequences), 0), dtype=np.float32)
        out = np.zeros((len(sequences), self.embedder.model.config.hidden_size), dtype=np.float32)
        for shard_rows, shard_vectors in gathered:
            out[shard_rows] = shard_vectors
        return out
