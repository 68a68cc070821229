"""Evaluate a causal LM (base, or base + LoRA adapter) on IMDB reviews.

    make mistral-eval DATA_DIR=../shared/data/imdb                     # zero-shot Mistral-7B-Instruct, 2500 test
    python -m mistral.evaluate --config configs/mistral_eval.yaml --adapter runs/mistral_sft/best_adapter
    python -m mistral.evaluate --config configs/mistral_eval.yaml --mode generate --n_test 200

mode score (default): one batched forward pass per batch of left-padded prompts; the prediction is the label whose
answer is more probable at the answer position: the probabilities of the first tokens of its variants (the trained
form, and with `answer_variants` its case and leading-space variants: positive, Positive, ▁positive, ...) summed.
Deterministic, nothing to parse, every review gets an answer. mode generate: greedy generation one review at a time
and parsing of the text, as the original work did; outputs that name neither label are counted as wrong and reported
as `unparsed`, not silently called negative (`accuracy` covers every review in both modes; `parsed` holds the
metrics of the parsed answers alone).
"""
from __future__ import annotations

import re
import time
from typing import Literal
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from common.config import RemoteCodeArguments, parse, run_main, setting
from common.data import BalancedArguments, summary_line
from common.metrics import classification_metrics, scalar_metrics
from common.precision import precision_record
from common.predictions import write_predictions
from common.run_folder import RunLogger, run_folder_setting
from common.trackers import TrackingArguments
from mistral.data import balanced_splits
from mistral.model import CausalLMArguments, check_adapter_folder, load_adapter, load_base, load_tokenizer
from mistral.prompts import PromptArguments, PromptFormat, make_format

def batch_size_setting():
    """Reviews per forward pass of label scoring: evaluate's and the benchmark's batch_size (the SFT script scores in
    its per_device_eval_batch_size)."""
    return setting(8, "reviews per forward pass in label scoring", at_least=1)


@dataclass
class ScoringArguments:
    """Settings of every command that scores reviews with a causal LM (this one and mistral.variant_mass)."""
    adapter: str | None = setting(None, "a LoRA adapter folder saved by mistral.train_sft (best_adapter/)")
    batch_size: int = batch_size_setting()
    max_length: int = setting(512, "prompt tokens at most; longer reviews are shortened, the answer cue kept",
                             at_least=1)


@dataclass
class EvalArguments(ScoringArguments, TrackingArguments, RemoteCodeArguments):
    split: Literal["train", "validation", "test"] = setting("test", "which split of the balanced protocol")
    mode: Literal["score", "generate"] = setting("score", "score (label scoring, batched) or generate (greedy "
                                                          "generation, parsed)")
    max_new_tokens: int = setting(5, "tokens generated per review in generate mode", at_least=1)
    output_dir: str = run_folder_setting("runs/mistral_eval")

SETTINGS = (EvalArguments, BalancedArguments, CausalLMArguments, PromptArguments)


def left_pad(batch: list[list[int]], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Prompts padded on the left, so the answer position is the last one; positions count real tokens only."""
    width = max(len(ids) for ids in batch)
    input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in batch], device=device)
    attention_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=device)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}


@torch.no_grad()
def score_margins(model, fmt: PromptFormat, reviews: list[str], batch_size: int = 8,
                  desc: str = "score") -> list[float]:
    """For each review, log P(positive answer) - log P(negative answer) at the answer position, each label's
    probability summed over the first tokens of its variants (logsumexp of logits: the softmax's normaliser is the
    same for both labels, so it cancels)."""
    was_training = model.training
    model.eval()
    prompts = [fmt.prompt_ids(r) for r in reviews]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths pad little
    neg, pos = (torch.tensor(ids) for ids in fmt.label_token_ids)
    margins = [0.0] * len(prompts)
    device = next(model.parameters()).device
    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False):
        idx = order[start:start + batch_size]
        batch = left_pad([prompts[i] for i in idx], fmt.tokenizer.pad_token_id, device)
        logits = model(**batch, logits_to_keep=1).logits[:, -1].float().cpu()
        for i, margin in zip(idx, (logits[:, pos].logsumexp(-1) - logits[:, neg].logsumexp(-1)).tolist()):
            margins[i] = margin
    model.train(was_training)
    return margins


def score_labels(model, fmt: PromptFormat, reviews: list[str], batch_size: int = 8, desc: str = "score") -> list[int]:
    """Label scoring: 1 where the positive answer outscores the negative one (score_margins > 0), else 0."""
    return [int(m > 0) for m in score_margins(model, fmt, reviews, batch_size, desc)]


def parse_answer(text: str, answer_words: list[str]) -> int | None:
    """The label whose word appears first in the generated text, or None if neither does."""
    found = [(m.start(), label) for label, word in enumerate(answer_words)
             for m in [re.search(rf"\b{re.escape(word.lower())}\b", text.lower())] if m]
    return min(found)[1] if found else None


@torch.no_grad()
def generate_labels(model, fmt: PromptFormat, reviews: list[str], answer_words: list[str],
                    max_new_tokens: int = 5) -> tuple[list[int | None], list[str]]:
    """Greedy generation, one review at a time (the original method), then parsing."""
    model.eval()
    device = next(model.parameters()).device
    preds, texts = [], []
    for review in tqdm(reviews, desc="generate", leave=False):
        ids = torch.tensor([fmt.prompt_ids(review)], device=device)
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=fmt.tokenizer.pad_token_id)
        text = fmt.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        texts.append(text)
        preds.append(parse_answer(text, answer_words))
    return preds, texts


def generate_metrics(labels: list[int], preds: list[int | None]) -> dict:
    """Metrics of parsed generations over all reviews, as in score mode: an unparsed answer counts as the wrong label
    (in accuracy, its interval, the per-class accuracies, F1 and the confusion matrix), so `accuracy` means the same
    in both modes. `parsed` holds the same metrics over the parsed answers alone (None when none parsed)."""
    counted = [1 - y if p is None else p for y, p in zip(labels, preds)]
    parsed = [(y, p) for y, p in zip(labels, preds) if p is not None]
    return {**classification_metrics(labels, counted), "unparsed": len(labels) - len(parsed),
            "parsed": classification_metrics(*zip(*parsed)) if parsed else None}


def evaluate_reviews(model, fmt: PromptFormat, reviews: list[str], labels: list[int], *, mode: str = "score",
                     batch_size: int = 8, answer_words: list[str] | None = None, max_new_tokens: int = 5,
                     desc: str = "score", predictions_path: Path | None = None) -> dict:
    """Metrics of one evaluation: accuracy, per-class accuracy, macro F1, confusion matrix, n (+ unparsed); with
    predictions_path, each review's prediction and score there too (common/predictions.py). Under a launcher each
    process scores its share of the reviews and every process gets the metrics of all."""
    start, state = time.perf_counter(), PartialState()
    with state.split_between_processes(list(range(len(reviews)))) as mine:
        texts = [reviews[i] for i in mine]
        if mode == "score":
            local = [(int(m > 0), m) for m in score_margins(model, fmt, texts, batch_size, desc)]
        else:
            local = [(p, None) for p in generate_labels(model, fmt, texts, answer_words, max_new_tokens)[0]]
        gathered = dict(gather_object(list(zip(mine, local))))
    preds, scores = zip(*(gathered[i] for i in range(len(reviews))))
    if predictions_path and state.is_main_process:
        write_predictions(predictions_path, reviews, labels, preds, None if mode == "generate" else scores)
    metrics = generate_metrics(labels, preds) if mode == "generate" else {**classification_metrics(labels, preds),
                                                                          "unparsed": 0}
    metrics["mode"] = mode
    metrics["examples_per_second"] = len(reviews) / (time.perf_counter() - start)
    return metrics


def main(argv=None) -> dict | None:
    args, data_args, model_args, prompt_args = parse(SETTINGS, argv)
    # under accelerate launch / torchrun: joins the process group (gloo on CPU), so the reviews split between ranks
    state = PartialState(cpu=not torch.cuda.is_available())
    if args.adapter:
        check_adapter_folder(args.adapter)
    splits, manifest = balanced_splits(data_args)
    print(summary_line(args.split, manifest["splits"][args.split]))
    # max_length is checked against the tokenizer before the (long) model load
    tokenizer = load_tokenizer(model_args.model_name_or_path, args.trust_remote_code)
    fmt = make_format(tokenizer, prompt_args, args.max_length)
    model, tokenizer = load_base(model_args.model_name_or_path, model_args.load_in_4bit, model_args.precision,
                                 args.trust_remote_code, tokenizer)
    if args.adapter:
        model = load_adapter(model, args.adapter)
    df = splits[args.split]
    metrics = evaluate_reviews(model, fmt, df["text"].tolist(), df["label"].tolist(), mode=args.mode,
                               batch_size=args.batch_size, answer_words=prompt_args.answer_words,
                               max_new_tokens=args.max_new_tokens,
                               predictions_path=Path(args.output_dir) / "predictions.parquet")
    if not state.is_main_process:  # every rank has the gathered metrics; rank 0 alone writes and reports them
        return None
    config = {**vars(args), **vars(data_args), **vars(model_args), **vars(prompt_args)}
    logger = RunLogger(args.output_dir, config, args.report_to, args.run_name)
    logger.log({f"{args.split}/{k}": v for k, v in scalar_metrics(metrics).items()}, 0)
    results = {"script": "mistral.evaluate", "model": model_args.model_name_or_path, "adapter": args.adapter,
               "model_parameters": sum(p.numel() for p in model.parameters()),
               "split": args.split, args.split: metrics, "manifest": manifest,
               "num_processes": state.num_processes, **precision_record(model_args.precision)}
    logger.finish(results)
    extra = f", {metrics['unparsed']} unparsed" if args.mode == "generate" else ""
    print(f"{args.split} accuracy {metrics['accuracy']:.4f} on {metrics['n']} "
          f"reviews ({args.mode}{extra}, {metrics['examples_per_second']:.1f} reviews/s) "
          f"-> {args.output_dir}/results.json")
    return results


if __name__ == "__main__":
    run_main(main)
