"""Fine-tune DistilBERT on IMDB with a hand-written PyTorch loop (Accelerate only places it on devices and processes).

    make distilbert-loop                                   # the published recipe: 3 epochs, lr 5e-5, batch 16
    python -m distilbert.train_loop --config configs/distilbert_loop.yaml --max_train_samples 2000
    accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes 2 -m distilbert.train_loop \
        --config configs/distilbert_loop.yaml                     # one process per GPU
    python -m distilbert.train_loop --config configs/distilbert_loop.yaml --resume_from_checkpoint latest

The run folder (output_dir) gets config.yaml, metrics.jsonl, checkpoints/step-N/ (model, tokenizer, optimizer,
scheduler, RNG state), best_model/ (the checkpoint with the best validation accuracy, loadable with
from_pretrained) and results.json (that model scored once on test).
"""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import gather_object, set_seed
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from common.config import UserError, parse, run_main, setting, to_dict
from common.data import make_splits, summary_line
from common.io import atomic_folder, find_checkpoint, numbered, staging_folder, swap_in, write_json
from common.predictions import write_predictions
from common.metrics import classification_metrics, scalar_metrics
from common.precision import accelerate_mixed_precision, resolve_precision
from common.environment import git_commit, peak_memory
from common.run_folder import RunLogger
from common.trackers import TrackingArguments
from distilbert.data import (DataArguments, LengthGroupedBatches, RandomBatches, cache_paths,
                             limit_splits, padding_collator, padding_record, sorted_batches,
                             tokenize_splits)
from distilbert.model import EncoderArguments, fit_max_length, load_model_and_tokenizer
from distilbert.results import RunRecord, finish_run


@dataclass
class LoopConfig(EncoderArguments, DataArguments, TrackingArguments):
    output_dir: str = setting("runs/distilbert_loop", "the run folder: config, metrics, checkpoints, results")
    seed: int = setting(42, "seed of the model's new head, the batch order and dropout", at_least=0)
    num_train_epochs: int = setting(3, "passes over the training reviews", at_least=1)
    max_steps: int | None = setting(None, "stop after this many optimizer steps (overrides num_train_epochs)",
                                   at_least=1)
    per_device_train_batch_size: int = setting(16, "reviews per training batch on each device", at_least=1)
    per_device_eval_batch_size: int = setting(64, "reviews per evaluation batch on each device", at_least=1)
    gradient_accumulation_steps: int = setting(1, "batches whose gradients add up to one optimizer step",
                                               at_least=1)
    learning_rate: float = setting(5e-5, "AdamW's peak learning rate (linear warm-up, then linear decay to 0)",
                                  above=0)
    weight_decay: float = setting(0.01, "AdamW weight decay (not on biases and LayerNorm weights)", at_least=0)
    warmup_steps: int = setting(500, "optimizer steps of linear warm-up", at_least=0)
    max_grad_norm: float = setting(1.0, "gradient clipping norm", above=0)
    batching: Literal["length_grouped", "random", "pad_to_max_length"] = setting(
        "length_grouped", "length_grouped, random, or pad_to_max_length (the original run)")
    logging_steps: int = setting(50, "log training metrics every N optimizer steps", at_least=1)
    eval_steps: int | None = setting(None, "also evaluate every N steps (always at each epoch's end)", at_least=1)
    save_steps: int = setting(500, "save a checkpoint every N optimizer steps (and at the end)", at_least=1)
    save_total_limit: int | None = setting(2, "step checkpoints kept (best_model/ is separate); none, 0 or less: all")
    resume_from_checkpoint: str | None = setting(None, "a checkpoint folder, or latest (the newest in output_dir)")


class TrainingError(UserError):
    pass


def optimizer_groups(model, weight_decay: float) -> list[dict]:
    """No weight decay on biases and LayerNorm weights, as in BERT's recipe."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_batches(cfg: LoopConfig, lengths):
    cls = RandomBatches if cfg.batching == "random" else LengthGroupedBatches
    return cls(lengths, cfg.per_device_train_batch_size, cfg.seed)


# ---------------------------------------------------------------- evaluation

def evaluate_split(model, dataset, collate, accelerator: Accelerator, *, batch_size: int,
                   desc: str) -> tuple[dict, dict]:
    """Metrics on a whole split, and each example's prediction and P(positive) in split order. Each process scores
    its share of batches; results are gathered by example index, so every example counts exactly once whatever the
    number of processes."""
    model.eval()
    batches = sorted_batches(dataset["length"], batch_size)[accelerator.process_index::accelerator.num_processes]
    rows = []
    with torch.no_grad():
        for idx in tqdm(batches, desc=desc, leave=False, disable=not accelerator.is_main_process):
            batch = {k: v.to(accelerator.device) for k, v in collate(dataset[idx]).items()}
            labels = batch.pop("labels")
            with accelerator.autocast():
                logits = model(**batch).logits.float()
            losses = F.cross_entropy(logits, labels, reduction="none")
            rows += zip(idx, logits.argmax(-1).tolist(), labels.tolist(), losses.tolist(),
                        logits.softmax(-1)[:, 1].tolist())
    model.train()
    rows = sorted(dict((r[0], r) for r in gather_object(rows)).values())
    if len(rows) != len(dataset):
        raise RuntimeError(f"evaluation saw {len(rows)} of {len(dataset)} examples")
    _, preds, labels, losses, scores = zip(*rows)
    metrics = {"loss": sum(losses) / len(losses), **classification_metrics(labels, preds)}
    return metrics, {"prediction": list(preds), "score": list(scores)}


# ---------------------------------------------------------------- checkpoints

def save_checkpoint(path: Path, accelerator, model, tokenizer, progress) -> None:
    """Everything a resumed run needs, through Accelerate's save_state: weights, optimizer, the registered scheduler,
    fp16's loss scaler and each process's RNG states; plus the model's config and tokenizer, so that a checkpoint
    also loads with from_pretrained, and the run's progress. Written into path.tmp and swapped in whole: a cut save
    is never a checkpoint (save_state alone writes in place), which exact resume needs."""
    tmp = staging_folder(path)  # atomic_folder's, written by every process (each saves its own RNG states)
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "state.json").write_text(json.dumps(dataclasses.asdict(progress), indent=2))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        swap_in(tmp, path)
    accelerator.wait_for_everyone()


def step_checkpoints(folder: Path) -> list[Path]:
    return numbered(folder, "step", "state.json")


def prune_checkpoints(folder: Path, keep: int | None) -> None:
    """Keep the newest `keep` step checkpoints; None, 0 or less keeps them all (Hugging Face's meaning). Not
    Accelerate's ProjectConfiguration(total_limit=...): it names checkpoints by save count, not by global step, and
    would delete in save_state, before our checkpoint is whole (swap_in)."""
    if keep is None or keep <= 0:
        return
    for old in step_checkpoints(folder)[:-keep]:
        shutil.rmtree(old)


def load_progress(path: Path):
    return TrainingProgress(**json.loads((path / "state.json").read_text()))


def load_checkpoint(path: Path, accelerator):
    accelerator.load_state(str(path))
    return load_progress(path)


def save_best(folder: Path, accelerator, model, tokenizer, info: dict) -> None:
    if accelerator.is_main_process:
        with atomic_folder(folder) as tmp:
            accelerator.unwrap_model(model).save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json(tmp / "best.json", info)
    accelerator.wait_for_everyone()


# ---------------------------------------------------------------- training

@dataclass
class TrainingProgress:
    """Where a run stands: saved in every checkpoint (state.json), so a resumed run goes on from there."""
    global_step: int = 0
    epoch: int = 0
    batches_done: int = 0  # of the current epoch
    best_accuracy: float = -1.0
    best_step: int | None = None
    train_time_s: float = 0.0  # in training steps, this process and those before it
    train_samples: int = 0
    skipped_steps: int = 0  # fp16 updates the GradScaler skipped (overflow)
    # the processes before this one, up to this checkpoint: a run cut into segments still reports its whole wall
    # time and peak memory, and the code each segment ran
    wall_time_s: float = 0.0
    peak_rss_mib: float = 0.0
    git_commits: list = field(default_factory=list)


@dataclass
class LoopRun:
    """What train() works on, made by main()."""
    accelerator: Accelerator
    model: torch.nn.Module
    tokenizer: object
    data: dict
    collate: object
    logger: RunLogger | None
    resume: Path | None
    start: float  # time.perf_counter() at the process's start


class LogWindow:
    """The batches since the last log line: mean loss, and samples/s over their training steps alone."""

    def __init__(self):
        self.losses, self.samples, self.seconds = [], 0, 0.0

    def add_batch(self, loss: float, samples: int) -> None:
        self.losses.append(loss)
        self.samples += samples

    def row(self, learning_rate: float, grad_norm, epoch: float, step: int) -> dict:
        return {"train/loss": sum(self.losses) / len(self.losses), "train/learning_rate": learning_rate,
                "train/grad_norm": float(grad_norm), "train/epoch": epoch, "train/global_step": step,
                "train/samples_per_second": self.samples / self.seconds}


def stamp_segment(progress: TrainingProgress, resumed: TrainingProgress, start: float, commit: str | None) -> None:
    """This process's wall time, peak memory and git commit added to those of the processes before it (resumed)."""
    progress.wall_time_s = round(resumed.wall_time_s + time.perf_counter() - start, 1)
    progress.peak_rss_mib = max(resumed.peak_rss_mib, peak_memory()["peak_rss_mib"])
    progress.git_commits = resumed.git_commits + ([commit] if resumed.git_commits[-1:] != [commit] else [])


def prepare_training(cfg: LoopConfig, accelerator, model, total_steps: int):
    """AdamW (fused on a GPU, as HF's Trainer uses there) and the linear schedule with warm-up, prepared."""
    optimizer = torch.optim.AdamW(optimizer_groups(model, cfg.weight_decay), lr=cfg.learning_rate,
                                  fused=accelerator.device.type == "cuda")
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    # registered, not prepared: a prepared scheduler steps once per process, which would run the schedule N times
    # faster under N processes; registered, save_state and load_state keep it in every checkpoint
    accelerator.register_for_checkpointing(scheduler)
    return model, optimizer, scheduler


def check_finite(loss, progress: TrainingProgress, checkpoints: Path):
    """The loss, or a one-line error naming the step and the last good checkpoint when it is not finite."""
    if not torch.isfinite(loss):
        last = step_checkpoints(checkpoints)
        raise TrainingError(f"loss is {loss.item()} at step {progress.global_step + 1}; stopped. "
                            f"Last good checkpoint: {last[-1] if last else 'none'}")
    return loss


def optimizer_step(accelerator, model, optimization: tuple, max_grad_norm: float, progress: TrainingProgress):
    """Once the accumulated batches are in (Accelerate's sync_gradients): clip, step, zero the gradients, and return
    the norm before clipping; None between. fp16's GradScaler may skip an update (overflow): the schedule then waits
    too, as in HF's Trainer, and the skip is counted."""
    if not accelerator.sync_gradients:
        return None
    optimizer, scheduler = optimization
    grad_norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    if accelerator.optimizer_step_was_skipped:
        progress.skipped_steps += 1
    else:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    progress.global_step += 1
    return grad_norm


def validate(cfg: LoopConfig, run: LoopRun, model, progress: TrainingProgress) -> None:
    """Score the validation split; keep the model in best_model/ when its accuracy is the best so far."""
    metrics, _ = evaluate_split(model, run.data["validation"], run.collate, run.accelerator,
                                batch_size=cfg.per_device_eval_batch_size, desc="eval")
    if run.logger:
        run.logger.log({f"eval/{k}": v for k, v in scalar_metrics(metrics).items()}, progress.global_step)
    run.accelerator.print(f"step {progress.global_step}: eval loss {metrics['loss']:.4f} "
                          f"accuracy {metrics['accuracy']:.4f}")
    if metrics["accuracy"] > progress.best_accuracy:
        progress.best_accuracy, progress.best_step = metrics["accuracy"], progress.global_step
        save_best(Path(cfg.output_dir) / "best_model", run.accelerator, model, run.tokenizer,
                  {"step": progress.global_step, "validation": metrics})


def train(cfg: LoopConfig, run: LoopRun) -> tuple[TrainingProgress, TrainingProgress]:
    """Epochs of batches; an optimizer step every gradient_accumulation_steps batches and at each epoch's end
    (Accelerate's accumulate); logs, validation and checkpoints on the steps the settings name. Returns where the run
    ended and where it resumed from."""
    accelerator, checkpoints = run.accelerator, Path(cfg.output_dir) / "checkpoints"
    batches = train_batches(cfg, run.data["train"]["length"])
    # The loader gets its own generator: by default each epoch's iterator draws a seed from the global RNG,
    # which dropout also uses, and a resumed run would then see different dropout masks.
    loader = accelerator.prepare(DataLoader(run.data["train"], batch_sampler=batches, collate_fn=run.collate,
                                            generator=torch.Generator().manual_seed(cfg.seed)))
    total_steps = cfg.max_steps or math.ceil(len(loader) / cfg.gradient_accumulation_steps) * cfg.num_train_epochs
    model, optimizer, scheduler = prepare_training(cfg, accelerator, run.model, total_steps)
    progress = load_checkpoint(run.resume, accelerator) if run.resume else TrainingProgress()
    resumed, commit, window = dataclasses.replace(progress), git_commit(), LogWindow()
    bar = tqdm(total=total_steps, initial=progress.global_step, desc="train", disable=not accelerator.is_main_process)
    model.train()
    while progress.global_step < total_steps:
        batches.set_epoch(progress.epoch)
        loader.set_epoch(progress.epoch)  # Accelerate's loader keeps its own epoch count and passes it down
        # resuming mid-epoch: the sampler replays the epoch's order; the batches already trained are not loaded
        epoch = accelerator.skip_first_batches(loader, progress.batches_done) if progress.batches_done else loader
        step_start, step_samples = time.perf_counter(), 0
        for batch in epoch:
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    loss = model(**batch).loss
                accelerator.backward(loss)  # divided by gradient_accumulation_steps
                loss = check_finite(accelerator.reduce(loss.detach(), "mean"), progress, checkpoints)
                step_samples += len(batch["labels"]) * accelerator.num_processes
                window.add_batch(loss.item(), len(batch["labels"]) * accelerator.num_processes)
                progress.batches_done += 1
                grad_norm = optimizer_step(accelerator, model, (optimizer, scheduler), cfg.max_grad_norm, progress)
            if grad_norm is None:
                continue
            step, seconds = progress.global_step, time.perf_counter() - step_start
            window.seconds, progress.train_time_s = window.seconds + seconds, progress.train_time_s + seconds
            progress.train_samples += step_samples
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if step % cfg.logging_steps == 0 or step == total_steps:
                if run.logger:
                    run.logger.log(window.row(scheduler.get_last_lr()[0], grad_norm,
                                              progress.epoch + progress.batches_done / len(loader), step), step)
                window = LogWindow()
            end_of_epoch = progress.batches_done == len(loader)
            if end_of_epoch:
                progress.epoch, progress.batches_done = progress.epoch + 1, 0
            if (cfg.eval_steps and step % cfg.eval_steps == 0) or end_of_epoch or step == total_steps:
                validate(cfg, run, model, progress)
            if step % cfg.save_steps == 0 or step == total_steps:
                stamp_segment(progress, resumed, run.start, commit)
                save_checkpoint(checkpoints / f"step-{step:07d}", accelerator, model, run.tokenizer, progress)
                if accelerator.is_main_process:
                    prune_checkpoints(checkpoints, cfg.save_total_limit)
            if step >= total_steps:
                break
            step_start, step_samples = time.perf_counter(), 0
    bar.close()
    return progress, resumed


SETTINGS = (LoopConfig,)


def load_data(cfg: LoopConfig, accelerator, tokenizer) -> tuple[dict, dict, dict, dict]:
    """The splits, their manifest, their tokens (one process tokenises and fills the cache, the others read it), and
    the record of what the data cost before training and what length-grouped batching saves on these reviews."""
    splits, manifest = make_splits(cfg.protocol, cfg.split_seed, cfg.data_dir)
    splits = limit_splits(splits, {"train": cfg.max_train_samples, "validation": cfg.max_eval_samples,
                                   "test": cfg.max_test_samples})
    from_cache = cfg.cache_dir is not None and all(
        p.is_dir() for p in cache_paths(splits, tokenizer, cfg.max_length, cfg.cache_dir).values())
    tokenize_start = time.perf_counter()
    with accelerator.main_process_first():
        data = tokenize_splits(splits, tokenizer, cfg.max_length, cfg.cache_dir)
    record = {"tokenize_s": round(time.perf_counter() - tokenize_start, 1), "from_cache": from_cache,
              "peak_rss_mib_after_tokenize": peak_memory()["peak_rss_mib"],
              "train": padding_record(data["train"]["length"], cfg.per_device_train_batch_size, cfg.seed,
                                      cfg.max_length)}
    return splits, manifest, data, record


def main(argv=None) -> dict | None:
    (cfg,) = parse(SETTINGS, argv)
    start = time.perf_counter()
    # cpu=True where there is no accelerator: it is what lets Accelerate form a multi-process CPU (gloo) group
    on_cpu = not (torch.cuda.is_available() or torch.backends.mps.is_available())
    # Accelerate keeps the first run's state (precision, accumulation) for the whole process and refuses another; a
    # second run in the same process (the benchmarks, the tests) starts afresh, as HF's TrainingArguments does. No
    # public call does this; the process group stays.
    AcceleratorState._reset_state()
    chosen_precision, precision_reason = resolve_precision(cfg.precision)
    accelerator = Accelerator(mixed_precision=accelerate_mixed_precision(chosen_precision), cpu=on_cpu,
                              gradient_accumulation_steps=cfg.gradient_accumulation_steps)
    set_seed(cfg.seed)
    resume = find_checkpoint(cfg.resume_from_checkpoint, Path(cfg.output_dir) / "checkpoints", "step", "state.json")
    model, tokenizer = load_model_and_tokenizer(cfg.model_name_or_path, cfg.trust_remote_code)
    cfg.max_length = fit_max_length(cfg.max_length, model, tokenizer)
    splits, manifest, data, data_record = load_data(cfg, accelerator, tokenizer)
    collate = padding_collator(tokenizer, cfg.max_length if cfg.batching == "pad_to_max_length" else None)
    logger = None
    if accelerator.is_main_process:
        for name, df in splits.items():
            accelerator.print(summary_line(name, {**manifest["splits"][name], "size": len(df)}))
        logger = RunLogger(cfg.output_dir, to_dict(cfg), cfg.report_to, cfg.run_name,
                           load_progress(resume).global_step if resume else None)
    train_start = time.perf_counter()
    progress, resumed = train(cfg, LoopRun(accelerator, model, tokenizer, data, collate, logger, resume, start))
    train_runtime = time.perf_counter() - train_start

    best = Path(cfg.output_dir) / "best_model"
    accelerator.unwrap_model(model).load_state_dict(load_file(best / "model.safetensors"))
    test, per_example = evaluate_split(model, data["test"], collate, accelerator,
                                       batch_size=cfg.per_device_eval_batch_size, desc="test")
    if not accelerator.is_main_process:
        return None
    write_predictions(Path(cfg.output_dir) / "predictions.parquet", splits["test"]["text"].tolist(),
                      splits["test"]["label"].tolist(), per_example["prediction"], per_example["score"])
    # train_samples_per_second counts what this process trained: a resumed run's checkpoint holds the samples and
    # step time of the part before the resume too, which this train() call's wall time does not cover
    return finish_run(logger, RunRecord(
        script="distilbert.train_loop", model=cfg.model_name_or_path,
        model_parameters=accelerator.unwrap_model(model).num_parameters(),
        test=test, validation=json.loads((best / "best.json").read_text())["validation"],
        best_step=progress.best_step, global_step=progress.global_step, manifest=manifest,
        split_sizes_used={k: len(v) for k, v in data.items()}, num_processes=accelerator.num_processes,
        precision=chosen_precision, precision_reason=precision_reason,
        train_samples_per_second=(progress.train_samples - resumed.train_samples) / train_runtime,
        train_runtime=train_runtime,
        train_step_samples_per_second=progress.train_samples / max(progress.train_time_s, 1e-9),
        wall_time_s=round(time.perf_counter() - start, 1),
        # skipped_steps: fp16 steps the GradScaler skipped (0 otherwise). data: this process's tokenisation (or cache
        # read) and the training reviews' padding. earlier_segments: a resumed run's processes before this one, up to
        # the checkpoint it resumed from (what they did after it was done again here)
        extra={"skipped_steps": progress.skipped_steps, "data": data_record,
               **({"earlier_segments": {"to_step": resumed.global_step, "wall_time_s": resumed.wall_time_s,
                                        "peak_rss_mib": resumed.peak_rss_mib,
                                        "git_commits": resumed.git_commits}} if resume else {})}))


if __name__ == "__main__":
    run_main(main)
