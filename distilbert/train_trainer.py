"""Fine-tune DistilBERT on IMDB with the Hugging Face Trainer: the same data, tokens, model and metrics as the loop.

    make distilbert-trainer
    python -m distilbert.train_trainer --config configs/distilbert_trainer.yaml --max_train_samples 2000
    python -m distilbert.train_trainer --config configs/distilbert_trainer.yaml --resume_from_checkpoint latest
    accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes 2 -m distilbert.train_trainer \
        --config configs/distilbert_trainer.yaml                  # one process per GPU

Settings: the script's own (ScriptArguments below) plus every `TrainingArguments` field, from the YAML or the
command line. The run folder gets the same config.yaml, metrics.jsonl (same metric names) and results.json
(same format) as distilbert/train_loop.py, so the two runs compare line by line; plus best_model/.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import Trainer, TrainingArguments, set_seed

from common.callbacks import MetricsLogger, checkpoint_step, find_trainer_checkpoint
from common.config import parse_hf_args, run_main, setting
from common.data import SPLIT_SEED_HELP, make_splits, summary_line
from common.distributed import one_gpu_per_process
from common.predictions import write_predictions
from common.metrics import classification_metrics, compute_metrics
from common.precision import precision
from common.tracking import RunLogger, configure_trainer_wandb
from distilbert.data import Collator, limit_splits, tokenize_splits
from distilbert.model import fit_max_length, load_model_and_tokenizer
from distilbert.results import finish_run


@dataclass
class ScriptArguments:
    model_name_or_path: str = setting("distilbert-base-uncased", "Hub id or local folder of the encoder to fine-tune")
    data_dir: str | None = setting(None, "folder with train/test.parquet; else $IMDB_DATA_DIR; else the Hub")
    protocol: str = setting("random_70_10_20", "split protocol: random_70_10_20, official or balanced")
    split_seed: int = setting(42, SPLIT_SEED_HELP)
    max_length: int = setting(512, "tokens kept per review (longer ones are truncated); at most the model's limit")
    max_train_samples: int | None = setting(None, "use only the first N training reviews (quick runs)")
    max_eval_samples: int | None = setting(None, "use only the first N validation reviews")
    max_test_samples: int | None = setting(None, "use only the first N test reviews")
    mixed_precision: str = setting("auto", "auto (bf16 or fp16 on a GPU, fp32 on CPU), no, bf16 or fp16")
    cache_dir: str | None = setting(".cache/tokenized", "where tokenised splits are cached; none: tokenise each run")
    trust_remote_code: bool = setting(False, "allow the model folder's own Python code")

def build_args(script: ScriptArguments, args: TrainingArguments) -> TrainingArguments:
    """Mixed precision from the script's `auto` setting; W&B offline when no account is configured."""
    if not (args.bf16 or args.fp16) and precision(script.mixed_precision) != "no":
        args = dataclasses.replace(args, **{precision(script.mixed_precision): True})
    configure_trainer_wandb(args.report_to, args.output_dir)
    return args


def main(argv=None) -> dict | None:
    script, args = parse_hf_args((ScriptArguments, TrainingArguments), argv)
    args = one_gpu_per_process(build_args(script, args), "distilbert.train_trainer")
    resume = find_trainer_checkpoint(args.resume_from_checkpoint, args.output_dir)
    start = time.perf_counter()
    set_seed(args.seed)  # before the model: its new classification head is drawn now, not when the Trainer seeds
    model, tokenizer = load_model_and_tokenizer(script.model_name_or_path, script.trust_remote_code)
    script.max_length = fit_max_length(script.max_length, model, tokenizer)
    splits, manifest = make_splits(script.protocol, script.split_seed, script.data_dir)
    splits = limit_splits(splits, {"train": script.max_train_samples, "validation": script.max_eval_samples,
                                   "test": script.max_test_samples})
    with args.main_process_first(desc="tokenise"):
        data = tokenize_splits(splits, tokenizer, script.max_length, script.cache_dir)

    logger = None
    if args.process_index == 0:
        for name, df in splits.items():
            print(summary_line(name, {**manifest["splits"][name], "size": len(df)}))
        config = {**dataclasses.asdict(script), **args.to_dict()}
        # W&B is the Trainer's own (report_to); this logger writes the run folder's files
        logger = RunLogger(args.output_dir, config, report_to="none", run_name=args.run_name,
                           resume_step=checkpoint_step(resume))
    samples_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
    metrics_logger = MetricsLogger(logger, samples_per_step) if logger else None
    trainer = Trainer(model=model, args=args, train_dataset=data["train"], eval_dataset=data["validation"],
                      data_collator=Collator(tokenizer.pad_token_id), processing_class=tokenizer,
                      compute_metrics=compute_metrics, callbacks=[metrics_logger] if metrics_logger else [])
    train_output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    best = Path(args.output_dir) / "best_model"
    trainer.save_model(str(best))  # with load_best_model_at_end, the model now in memory is the best one
    validation, _ = split_metrics(trainer, data["validation"], "validation")
    test, per_example = split_metrics(trainer, data["test"], "test")
    if logger is None:
        return None
    write_predictions(Path(args.output_dir) / "predictions.parquet", splits["test"]["text"].tolist(),
                      splits["test"]["label"].tolist(), per_example["prediction"], per_example["score"])
    throughput = {"train_samples_per_second": train_output.metrics["train_samples_per_second"],
                  "train_step_samples_per_second": metrics_logger.samples_per_second}
    return finish_run(logger, "distilbert.train_trainer", script.model_name_or_path, trainer.model, test, validation,
                      best_step(trainer), trainer.state.global_step, manifest, data, args.world_size,
                      "bf16" if args.bf16 else "fp16" if args.fp16 else "no", throughput, start, args.output_dir)


def split_metrics(trainer: Trainer, dataset, name: str) -> tuple[dict, dict]:
    """The full metrics (confusion matrix included) of the current model on one split, and each example's
    prediction and P(positive) in split order."""
    import torch

    out = trainer.predict(dataset, metric_key_prefix=name)
    predictions = np.argmax(out.predictions, -1)
    metrics = {"loss": out.metrics[f"{name}_loss"], **classification_metrics(out.label_ids, predictions)}
    # With group_by_length the Trainer also evaluates in length-grouped order (a seeded sampler): put each
    # prediction back at its example's position, and check the labels came back in that order too.
    sampler = trainer._get_eval_sampler(dataset)
    order = np.asarray(list(sampler) if sampler is not None else range(len(dataset)))
    if not (np.asarray(dataset["labels"])[order] == out.label_ids).all():
        raise RuntimeError(f"{name}: predictions came back in an order other than the evaluation sampler's")
    in_place = np.empty_like(out.predictions)
    in_place[order] = out.predictions
    scores = torch.from_numpy(in_place).float().softmax(-1)[:, 1].tolist()
    return metrics, {"prediction": np.argmax(in_place, -1).tolist(), "score": scores}


def best_step(trainer: Trainer) -> int | None:
    path = trainer.state.best_model_checkpoint
    return int(path.rsplit("-", 1)[-1]) if path else None


if __name__ == "__main__":
    run_main(main)
