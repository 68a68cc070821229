"""One process per GPU, as `accelerate launch` / torchrun start them (ranks, sharding and gathering are Accelerate's
`PartialState`).

Without a launcher, HF's Trainer wraps the model in DataParallel on a machine with several visible GPUs and
multiplies the batch by their number: a different recipe under the same config. The scripts keep such a run on one
GPU instead (`one_gpu_per_process`) and say how to use them all.
"""
from __future__ import annotations


def one_gpu_per_process(args, script: str):
    """Keep a launcher-less Trainer run on one GPU: `args.n_gpu > 1` would mean DataParallel and a batch of
    per_device_train_batch_size x n_gpu. The same trick HF's Trainer uses for model-parallel models."""
    if args.n_gpu > 1:
        print(f"{args.n_gpu} GPUs visible and no launcher: training on one GPU with the configured batch. To use all "
              f"of them (one process each): accelerate launch --config_file configs/accelerate/ddp.yaml "
              f"--num_processes {args.n_gpu} -m {script} ...")
        args._n_gpu = 1
    return args
