"""results.json of the two DistilBERT scripts, built in one place so that the loop's and the Trainer's compare key
by key, and the line each prints at the end."""
from __future__ import annotations

import time


def finish_run(logger, script: str, model_name: str, model, test: dict, validation: dict, best_step, global_step: int,
               manifest: dict, data: dict, num_processes: int, mixed_precision: str, throughput: dict,
               start: float, output_dir: str, **extra) -> dict:
    """Log the test metrics, write results.json through the run's logger and print the summary line.

    throughput: train_samples_per_second (Hugging Face's meaning: samples trained over the wall time of the whole
    train() call, evaluations and checkpoint saves included) and train_step_samples_per_second (over the time spent
    in training steps alone: the model's speed, which the batching benchmarks compare)."""
    from common.metrics import scalar_metrics

    logger.log({f"test/{k}": v for k, v in scalar_metrics(test).items()}, global_step)
    results = {
        "script": script, "model": model_name, "model_parameters": sum(p.numel() for p in model.parameters()),
        "test": test, "validation": validation, "best_step": best_step, "global_step": global_step,
        "manifest": manifest, "split_sizes_used": {k: len(v) for k, v in data.items()},
        "num_processes": num_processes, "mixed_precision": mixed_precision, **throughput, **extra,
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    logger.finish(results)
    print(f"test accuracy {test['accuracy']:.4f}  F1 {test['f1']:.4f}  (best step {best_step}, "
          f"{results['train_samples_per_second']:.1f} samples/s in train(), "
          f"{results['train_step_samples_per_second']:.1f} in its steps)  -> {output_dir}/results.json")
    return results
