"""results.json of the two DistilBERT scripts, built from one record so that the loop's and the Trainer's compare key
by key, and the line each prints at the end."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class RunRecord:
    """What a DistilBERT run produced; its fields are results.json's keys.

    train_samples_per_second has Hugging Face's meaning: samples this process trained over the wall time of its
    train() call (train_runtime), evaluations and checkpoint saves included. train_step_samples_per_second counts
    the time spent in training steps alone: the model's speed, which the batching benchmarks compare."""
    script: str
    model: str
    model_parameters: int
    test: dict
    validation: dict
    best_step: int | None
    global_step: int
    manifest: dict
    split_sizes_used: dict
    num_processes: int
    precision: str  # fp32, bf16 or fp16
    precision_reason: str  # why `auto` chose it (common/precision.py), or that it was set
    train_samples_per_second: float
    train_runtime: float
    train_step_samples_per_second: float
    wall_time_s: float
    extra: dict = field(default_factory=dict)  # what one script alone knows (the loop's skipped fp16 steps)


def finish_run(logger, record: RunRecord) -> dict:
    """Log the test metrics, write results.json through the run's logger and print the summary line."""
    from common.metrics import scalar_metrics

    logger.log({f"test/{k}": v for k, v in scalar_metrics(record.test).items()}, record.global_step)
    results = dataclasses.asdict(record)
    results.update(results.pop("extra"))
    logger.finish(results)
    print(f"test accuracy {record.test['accuracy']:.4f}  F1 {record.test['f1']:.4f}  (best step {record.best_step}, "
          f"{record.train_samples_per_second:.1f} samples/s in train(), "
          f"{record.train_step_samples_per_second:.1f} in its steps)  -> {logger.output_dir}/results.json")
    return results
