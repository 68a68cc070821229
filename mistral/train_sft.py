"""QLoRA fine-tuning of Mistral-7B for IMDB sentiment with TRL's SFTTrainer: zero-shot vs tuned on one test set.

    make mistral-sft DATA_DIR=../shared/data/imdb
    python -m mistral.train_sft --config configs/mistral_sft.yaml --n_train 200 --num_train_epochs 1
    python -m mistral.train_sft --config configs/mistral_sft.yaml --load_in_4bit false     # plain LoRA
    accelerate launch --config_file configs/accelerate/mistral_qlora_ddp.yaml --num_processes 4 -m mistral.train_sft \
        --config configs/mistral_sft.yaml --gradient_accumulation_steps 1        # one process per GPU

One run: balanced splits (900 train / 100 eval / 2500 test) -> base model in 4-bit NF4 -> zero-shot evaluation on
test -> LoRA SFT on prompt/completion pairs, loss on the answer and EOS only -> eval accuracy every epoch, best epoch
kept -> tuned evaluation on the same test reviews. The run folder gets results.json with both evaluations side by
side, metrics.jsonl, config.yaml, best_adapter/ (LoRA weights, safetensors, and tokenizer) and, with --merge true,
merged/ (the base model with the adapter folded in).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
from accelerate import PartialState
from accelerate.utils import release_memory
from transformers import TrainerCallback, set_seed
from trl import SFTConfig, SFTTrainer

from common.callbacks import MetricsLogger, checkpoint_step, find_trainer_checkpoint, without_trainer_trackio
from common.config import ConfigError, UserError, parse, run_main, setting
from common.data import BalancedArguments, summary_line
from common.distributed import one_gpu_per_process
from common.io import write_json
from common.metrics import scalar_metrics
from common.run_folder import RunLogger
from common.trackers import configure_trainer_tracking
from mistral.evaluate import evaluate_reviews
from mistral.learning_guard import LearningGuard
from common.precision import precision_record, resolve_precision, trainer_fields
from mistral.data import balanced_splits
from mistral.model import CausalLMArguments, add_lora, load_base, load_tokenizer
from mistral.prompts import PromptArguments, make_format


@dataclass
class ScriptArguments:
    merge: bool = setting(False, "also write merged/: unquantised base weights with the adapter folded in")

SETTINGS = (ScriptArguments, BalancedArguments, CausalLMArguments, PromptArguments, SFTConfig)
# The script's defaults where TRL's would not run it: mixed precision follows the precision setting (configure sets
# bf16 or fp16), and TRL's bf16=True would already fail at parsing on a machine without bf16; the best epoch is
# chosen on eval accuracy, so there must be evaluations. per_device_eval_batch_size is also label scoring's batch.
DEFAULTS = {"bf16": False, "eval_strategy": "epoch", "save_strategy": "epoch", "per_device_eval_batch_size": 8}


class EvalAccuracy(TrainerCallback):
    """After each of the Trainer's evaluations (eval loss), score the eval reviews, log eval accuracy, and keep
    the adapter of the best epoch in best_adapter/."""

    def __init__(self, fmt, reviews, labels, *, batch_size: int, folder: Path, resume: bool = False):
        self.fmt, self.reviews, self.labels, self.batch_size, self.folder = fmt, reviews, labels, batch_size, folder
        self.trainer, self.best = None, {"accuracy": -1.0, "step": None}
        if resume and (folder / "best.json").is_file():  # the best epoch before the interruption still counts
            self.best = json.loads((folder / "best.json").read_text())

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        metrics = evaluate_reviews(model, self.fmt, self.reviews, self.labels, batch_size=self.batch_size, desc="eval")
        self.trainer.log({"eval_accuracy": metrics["accuracy"], "eval_f1": metrics["f1"]})
        # every process scores the same metrics (gathered), so all agree on the best; rank 0 alone writes it
        if metrics["accuracy"] > self.best["accuracy"]:
            self.best = {"accuracy": metrics["accuracy"], "step": state.global_step, "epoch": state.epoch,
                         "validation": metrics}
            if state.is_world_process_zero:
                model.save_pretrained(self.folder)
                self.fmt.tokenizer.save_pretrained(self.folder)
                write_json(self.folder / "best.json", self.best)
            PartialState().wait_for_everyone()


def configure(sft: SFTConfig, model_args: CausalLMArguments) -> SFTConfig:
    """Mixed precision from the precision setting; paged optimizers need CUDA, so CPU runs fall back to plain AdamW."""
    changes = {**trainer_fields(resolve_precision(model_args.precision)[0]), "completion_only_loss": True}
    if not torch.cuda.is_available() and sft.optim.startswith("paged_"):
        print(f"no GPU: optim {sft.optim} -> adamw_torch")
        changes["optim"] = "adamw_torch"
    return dataclasses.replace(sft, **changes)


def zero_shot_once(model, fmt, test, manifest: dict, *, batch_size: int, path: Path) -> dict:
    """The untouched model's test metrics; a resumed run reuses those it saved, if the test set is the same."""
    test_hash = manifest["splits"]["test"]["sha256"]
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("test_sha256") == test_hash:
            print(f"zero-shot: reusing {path}")
            return saved["metrics"]
    metrics = evaluate_reviews(model, fmt, test["text"].tolist(), test["label"].tolist(), batch_size=batch_size,
                               desc="zero-shot", predictions_path=path.with_name("predictions_zero_shot.parquet"))
    if PartialState().is_main_process:
        write_json(path, {"test_sha256": test_hash, "metrics": metrics})
    return metrics


def to_dataset(fmt, df) -> datasets.Dataset:
    return datasets.Dataset.from_list([fmt.example(t, y) for t, y in zip(df["text"], df["label"])])


def check_settings(model_args, sft):
    """The settings against each other and the run folder, before any data, tokenizer or model is loaded."""
    if sft.eval_strategy == "no":
        raise ConfigError("eval_strategy: the best epoch is chosen on eval accuracy: expected epoch or steps, got no")
    sft = one_gpu_per_process(configure(sft, model_args), "mistral.train_sft")  # also forms the process group
    return sft, find_trainer_checkpoint(sft.resume_from_checkpoint, sft.output_dir)


def load_data_and_format(data_args, model_args, prompt_args, sft):
    """The balanced splits and the prompt format (the tokenizer checked against max_length): cheap, so before the
    (long) model load."""
    splits, manifest = balanced_splits(data_args)
    for name, info in manifest["splits"].items():
        print(summary_line(name, info))
    tokenizer = load_tokenizer(model_args.model_name_or_path, sft.trust_remote_code)
    return splits, manifest, make_format(tokenizer, prompt_args, sft.max_length)


def adapters_in_fp32(model) -> None:
    """Undo TRL's cast of a quantised model's adapter weights to bf16 (SFTTrainer.__init__, after the QLoRA paper)
    where the run does not compute in bf16: on a CPU without native bf16 every adapter matmul would then be emulated
    (several times slower), and fp16 mixed precision keeps its trainable weights in fp32."""
    for param in model.parameters():
        if param.requires_grad and param.dtype == torch.bfloat16:
            param.data = param.data.float()


def fine_tune(model, fmt, splits, sft, *, logger, resume, out: Path):
    """LoRA SFT with eval accuracy after every evaluation; returns the trainer, the best epoch's record and the
    Trainer's train() metrics. The best adapter is in out/best_adapter on disk."""
    val = splits["validation"]
    accuracy = EvalAccuracy(fmt, val["text"].tolist(), val["label"].tolist(), batch_size=sft.per_device_eval_batch_size,
                            folder=out / "best_adapter", resume=resume is not None)
    samples_per_step = sft.per_device_train_batch_size * sft.gradient_accumulation_steps * sft.world_size
    callbacks = [LearningGuard(), accuracy] + ([MetricsLogger(logger, samples_per_step)] if logger else [])
    trainer = SFTTrainer(model=model, args=sft, train_dataset=to_dataset(fmt, splits["train"]),
                         eval_dataset=to_dataset(fmt, val), processing_class=fmt.tokenizer, callbacks=callbacks)
    without_trainer_trackio(trainer)
    if not sft.bf16:
        adapters_in_fp32(trainer.model)
    accuracy.trainer = trainer
    metrics = trainer.train(resume_from_checkpoint=str(resume) if resume else None).metrics
    accuracy.trainer = None
    if accuracy.best["step"] is None:
        raise UserError("no evaluation ran during training: set eval_strategy to epoch (or steps)")
    metrics["train_step_samples_per_second"] = callbacks[-1].samples_per_second if logger else None
    return trainer, accuracy.best, metrics


def load_best_adapter(model, folder: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors"))


def main(argv=None) -> dict | None:
    script, data_args, model_args, prompt_args, sft = parse(SETTINGS, argv, defaults=DEFAULTS)
    start = time.perf_counter()
    # before any data or model is loaded; W&B is the Trainer's callback, Trackio (if asked) is fed by the RunLogger
    run_logger_reports_to = configure_trainer_tracking(sft.report_to, sft.output_dir)
    sft, resume = check_settings(model_args, sft)
    splits, manifest, fmt = load_data_and_format(data_args, model_args, prompt_args, sft)
    out, test = Path(sft.output_dir), splits["test"]

    set_seed(sft.seed)  # before the model: the LoRA weights are drawn in add_lora, before the Trainer seeds
    model, tokenizer = load_base(model_args.model_name_or_path, model_args.load_in_4bit, model_args.precision,
                                 sft.trust_remote_code, fmt.tokenizer)
    logger = None  # under a launcher, rank 0 alone writes the run folder and feeds Trackio; W&B is a Trainer callback
    if sft.process_index == 0:
        config = {**vars(script), **vars(data_args), **vars(model_args), **vars(prompt_args), **sft.to_dict()}
        logger = RunLogger(out, config, report_to=run_logger_reports_to, run_name=sft.run_name,
                           resume_step=checkpoint_step(resume))

    zero_shot = zero_shot_once(model, fmt, test, manifest, batch_size=sft.per_device_eval_batch_size,
                               path=out / "zero_shot.json")
    if logger:
        logger.log({f"zero_shot/{k}": v for k, v in scalar_metrics(zero_shot).items()}, 0)
        print(f"zero-shot test accuracy {zero_shot['accuracy']:.4f}")
    model = add_lora(model, r=model_args.lora_r, alpha=model_args.lora_alpha, dropout=model_args.lora_dropout,
                     target_modules=model_args.lora_target_modules, quantized=model_args.load_in_4bit,
                     gradient_checkpointing=sft.gradient_checkpointing)
    trainer, best, train_metrics = fine_tune(model, fmt, splits, sft, logger=logger, resume=resume, out=out)
    load_best_adapter(model, out / "best_adapter")
    tuned = evaluate_reviews(model, fmt, test["text"].tolist(), test["label"].tolist(),
                             batch_size=sft.per_device_eval_batch_size, desc="tuned",
                             predictions_path=out / "predictions_tuned.parquet")
    if logger is None:
        return None
    logger.log({f"test/{k}": v for k, v in scalar_metrics(tuned).items()}, trainer.state.global_step)
    results = {
        "script": "mistral.train_sft", "model": model_args.model_name_or_path,
        "model_parameters": sum(p.numel() for p in model.parameters()),  # 4-bit weights count packed: a lower bound
        "quantization": "nf4-double-quant" if model_args.load_in_4bit else None,
        "zero_shot": zero_shot, "tuned": tuned, "best_epoch": best["epoch"], "best_step": best["step"],
        "validation": best["validation"], "global_step": trainer.state.global_step, "manifest": manifest,
        "num_processes": sft.world_size, **precision_record(model_args.precision),
        "train_samples_per_second": train_metrics["train_samples_per_second"],
        "train_step_samples_per_second": train_metrics["train_step_samples_per_second"],
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    logger.finish(results)
    print(f"test accuracy: zero-shot {zero_shot['accuracy']:.4f} -> tuned {tuned['accuracy']:.4f} "
          f"(best epoch {best['epoch']:.0f})  -> {out}/results.json")
    if script.merge:  # after results.json, with the training model gone: the merge loads a second, unquantised copy
        model, trainer = release_memory(model, trainer)
        merge(model_args, out / "best_adapter", out / "merged", sft.trust_remote_code)
    return results


def merge(model_args: CausalLMArguments, adapter: Path, folder: Path, trust_remote_code: bool = False) -> None:
    """Fold the adapter into unquantised base weights (merging into 4-bit weights would lose precision)."""
    from mistral.model import load_adapter

    base, tokenizer = load_base(model_args.model_name_or_path, load_in_4bit=False, precision=model_args.precision,
                                trust_remote_code=trust_remote_code)
    merged = load_adapter(base, str(adapter)).merge_and_unload()
    merged.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "merged_from.json").write_text(json.dumps({"base": model_args.model_name_or_path,
                                                         "adapter": str(adapter)}, indent=2))


if __name__ == "__main__":
    run_main(main)
