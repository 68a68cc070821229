"""Pieces shared by the Hugging Face Trainer scripts (DistilBERT Trainer, Mistral SFT): metrics logging, resuming."""
from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback

from common.io import find_checkpoint, follow_umask
from common.metrics import scalar_metrics
from common.run_folder import RunLogger

# Trainer log keys -> the project's metric names (those of the hand-written loop)
TRAIN_KEYS = {"loss": "train/loss", "learning_rate": "train/learning_rate", "grad_norm": "train/grad_norm",
              "epoch": "train/epoch"}


class MetricsLogger(TrainerCallback):
    """Mirrors the Trainer's logs into metrics.jsonl under the project's names (those of the hand-written
    DistilBERT loop), with train-only throughput: the time between step begin and step end, evaluation excluded."""

    def __init__(self, logger: RunLogger, samples_per_step: int):
        self.logger, self.samples_per_step = logger, samples_per_step
        self.window_time, self.window_steps, self.total_time, self.total_steps = 0.0, 0, 0.0, 0

    def on_step_begin(self, args, state, control, **kwargs):
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        elapsed = time.perf_counter() - self.t0
        self.window_time += elapsed
        self.total_time += elapsed
        self.window_steps += 1
        self.total_steps += 1

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        row = {}
        if "loss" in logs:
            row = {new: logs[old] for old, new in TRAIN_KEYS.items() if old in logs}
            row["train/global_step"] = state.global_step
            if self.window_time > 0:
                row["train/samples_per_second"] = self.window_steps * self.samples_per_step / self.window_time
            self.window_time, self.window_steps = 0.0, 0
        row.update({f"eval/{k[5:]}": v for k, v in scalar_metrics(logs).items() if k.startswith("eval_")
                    and not k.endswith(("_runtime", "_per_second"))})
        if row:
            self.logger.log(row, state.global_step)

    def on_save(self, args, state, control, **kwargs):
        follow_umask(args.output_dir)  # the Trainer's checkpoints: safetensors writes its weights owner-only

    @property
    def samples_per_second(self) -> float:
        return self.total_steps * self.samples_per_step / max(self.total_time, 1e-9)


def without_trainer_trackio(trainer) -> None:
    """Take the Trainer's TrackioCallback out: the script's RunLogger feeds Trackio (common/trackers.py says why)."""
    from transformers.integrations import TrackioCallback

    trainer.remove_callback(TrackioCallback)


def find_trainer_checkpoint(value: str | None, output_dir: str) -> Path | None:
    """The Trainer checkpoint that `resume_from_checkpoint` names: a folder, or "latest" (the newest finished
    checkpoint-N). Not transformers' get_last_checkpoint: that takes the newest checkpoint-N folder even when a save
    cut short left it without trainer_state.json."""
    return find_checkpoint(value, output_dir, "checkpoint", "trainer_state.json")


def checkpoint_step(checkpoint: Path | None) -> int | None:
    """The global step a Trainer checkpoint was saved at (where metrics.jsonl is cut back to on resume)."""
    return json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] if checkpoint else None
