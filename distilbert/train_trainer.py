"""Fine-tune DistilBERT on IMDB with the Hugging Face Trainer: the same data, tokens, model and metrics as the loop.

    make distilbert-trainer
    python -m distilbert.train_trainer --config configs/distilbert_trainer.yaml --max_train_samples 2000
    python -m distilbert.train_trainer --config configs/distilbert_trainer.yaml --resume_from_checkpoint latest
    accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes 2 -m distilbert.train_trainer \
        --config configs/distilbert_trainer.yaml                  # one process per GPU

Settings: the model and data settings it shares with the loop (distilbert/model.py, distilbert/data.py) plus every
`TrainingArguments` field, from the YAML or the
command line. The run folder gets the same config.yaml, metrics.jsonl (same metric names) and results.json
(same format) as distilbert/train_loop.py, so the two runs compare line by line; plus best_model/.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from transformers import Trainer, TrainingArguments, set_seed

from common.callbacks import MetricsLogger, checkpoint_step, find_trainer_checkpoint, without_trainer_trackio
from common.config import parse, run_main
from common.data import make_splits, summary_line
from common.distributed import one_gpu_per_process
from common.predictions import write_predictions
from common.metrics import classification_metrics, compute_metrics
from common.precision import resolve_precision, trainer_fields
from common.run_folder import RunLogger
from common.trackers import configure_trainer_tracking
from distilbert.data import DataArguments, limit_splits, padding_collator, tokenize_splits
from distilbert.model import EncoderArguments, fit_max_length, load_model_and_tokenizer
from distilbert.results import RunRecord, finish_run


def build_args(model_args: EncoderArguments, args: TrainingArguments) -> tuple[TrainingArguments, str]:
    """Mixed precision from the script's `auto` setting, unless --bf16 or --fp16 says otherwise; and why."""
    if args.bf16 or args.fp16:
        return args, "set explicitly (--bf16 or --fp16)"
    chosen, reason = resolve_precision(model_args.precision)
    return dataclasses.replace(args, **trainer_fields(chosen)), reason


SETTINGS = (EncoderArguments, DataArguments, TrainingArguments)


def main(argv=None) -> dict | None:
    model_args, data_args, args = parse(SETTINGS, argv)
    args, precision_reason = build_args(model_args, args)
    args = one_gpu_per_process(args, "distilbert.train_trainer")
    run_logger_reports_to = configure_trainer_tracking(args.report_to, args.output_dir)
    resume = find_trainer_checkpoint(args.resume_from_checkpoint, args.output_dir)
    start = time.perf_counter()
    set_seed(args.seed)  # before the model: its new classification head is drawn now, not when the Trainer seeds
    model, tokenizer = load_model_and_tokenizer(model_args.model_name_or_path, model_args.trust_remote_code)
    data_args.max_length = fit_max_length(data_args.max_length, model, tokenizer)
    splits, manifest = make_splits(data_args.protocol, data_args.split_seed, data_args.data_dir)
    splits = limit_splits(splits, {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples,
                                   "test": data_args.max_test_samples})
    with args.main_process_first(desc="tokenise"):
        data = tokenize_splits(splits, tokenizer, data_args.max_length, data_args.cache_dir)

    logger = None
    if args.process_index == 0:
        for name, df in splits.items():
            print(summary_line(name, {**manifest["splits"][name], "size": len(df)}))
        config = {**dataclasses.asdict(model_args), **dataclasses.asdict(data_args), **args.to_dict()}
        # W&B is the Trainer's own (report_to); this logger writes the run folder's files and feeds Trackio
        logger = RunLogger(args.output_dir, config, report_to=run_logger_reports_to, run_name=args.run_name,
                           resume_step=checkpoint_step(resume))
    samples_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    metrics_logger = MetricsLogger(logger, samples_per_step) if logger else None
    trainer = Trainer(model=model, args=args, train_dataset=data["train"], eval_dataset=data["validation"],
                      data_collator=padding_collator(tokenizer), processing_class=tokenizer,
                      compute_metrics=compute_metrics, callbacks=[metrics_logger] if metrics_logger else [])
    without_trainer_trackio(trainer)
    train_output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    best = Path(args.output_dir) / "best_model"
    trainer.save_model(str(best))  # with load_best_model_at_end, the model now in memory is the best one
    validation, _ = split_metrics(trainer, data["validation"], "validation")
    test, per_example = split_metrics(trainer, data["test"], "test")
    if logger is None:
        return None
    write_predictions(Path(args.output_dir) / "predictions.parquet", splits["test"]["text"].tolist(),
                      splits["test"]["label"].tolist(), per_example["prediction"], per_example["score"])
    return finish_run(logger, RunRecord(
        script="distilbert.train_trainer", model=model_args.model_name_or_path,
        model_parameters=trainer.model.num_parameters(), test=test, validation=validation,
        best_step=best_step(trainer), global_step=trainer.state.global_step, manifest=manifest,
        split_sizes_used={k: len(v) for k, v in data.items()}, num_processes=args.world_size,
        precision="bf16" if args.bf16 else "fp16" if args.fp16 else "fp32", precision_reason=precision_reason,
        train_samples_per_second=train_output.metrics["train_samples_per_second"],
        train_runtime=train_output.metrics["train_runtime"],
        train_step_samples_per_second=metrics_logger.samples_per_second,
        wall_time_s=round(time.perf_counter() - start, 1)))


def split_metrics(trainer: Trainer, dataset, name: str) -> tuple[dict, dict]:
    """The full metrics (confusion matrix included) of the current model on one split, and each example's
    prediction and P(positive) in split order."""
    # With group_by_length the Trainer also evaluates in length-grouped order; predicted with sequential sampling,
    # each prediction is at its example's position (the labels are checked to have come back in that order).
    strategy, trainer.args.train_sampling_strategy = trainer.args.train_sampling_strategy, "random"
    try:
        out = trainer.predict(dataset, metric_key_prefix=name)
    finally:
        trainer.args.train_sampling_strategy = strategy
    if not (np.asarray(dataset["labels"]) == out.label_ids).all():
        raise RuntimeError(f"{name}: predictions came back in an order other than the split's")
    predictions = np.argmax(out.predictions, -1)
    metrics = {"loss": out.metrics[f"{name}_loss"], **classification_metrics(out.label_ids, predictions)}
    scores = torch.from_numpy(out.predictions).float().softmax(-1)[:, 1].tolist()
    return metrics, {"prediction": predictions.tolist(), "score": scores}


def best_step(trainer: Trainer) -> int | None:
    path = trainer.state.best_model_checkpoint
    return int(path.rsplit("-", 1)[-1]) if path else None


if __name__ == "__main__":
    run_main(main)
