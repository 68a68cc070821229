"""One process per GPU, as `accelerate launch` / torchrun start them: rank helpers shared by the Trainer scripts.

Without a launcher, HF's Trainer wraps the model in DataParallel on a machine with several visible GPUs and
multiplies the batch by their number: a different recipe under the same config. The scripts keep such a run on one
GPU instead (`one_gpu_per_process`) and say how to use them all.
"""
from __future__ import annotations

import os

import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 without a process group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return rank_and_world()[0] == 0


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def local_rank() -> int:
    """The GPU index of this process on its machine (LOCAL_RANK, set by accelerate launch and torchrun)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def gather_lists(items: list) -> list:
    """Every process's list, concatenated in rank order (the list itself without a process group)."""
    if rank_and_world()[1] == 1:
        return list(items)
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(items))
    return [x for part in parts for x in part]


def one_gpu_per_process(args, script: str):
    """Keep a launcher-less Trainer run on one GPU: `args.n_gpu > 1` would mean DataParallel and a batch of
    per_device_train_batch_size x n_gpu. The same trick HF's Trainer uses for model-parallel models."""
    if args.n_gpu > 1:
        print(f"{args.n_gpu} GPUs visible and no launcher: training on one GPU with the configured batch. To use all "
              f"of them (one process each): accelerate launch --config_file configs/accelerate/ddp.yaml "
              f"--num_processes {args.n_gpu} -m {script} ...")
        args._n_gpu = 1
    return args


def shard(n: int) -> range:
    """The indices out of n that this process handles: every world-th one from its rank."""
    rank, world = rank_and_world()
    return range(rank, n, world)
