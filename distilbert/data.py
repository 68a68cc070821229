"""Tokenised IMDB splits for the DistilBERT scripts: tokenise once and cache, length-grouped batches, padding.

Shared by train_loop.py and train_trainer.py, so both see the same examples and tokens. Their batches differ: the loop
draws them with LengthGroupedBatches below, the Trainer with its own length-grouped sampler (group_by_length).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import torch

from common.config import setting
from common.data import DataError, SplitArguments, split_hash
from common.io import atomic_folder



@dataclass
class LengthArguments:
    max_length: int = setting(512, "tokens kept per review (longer ones are truncated); at most the model's limit",
                             at_least=2)


@dataclass
class DataArguments(SplitArguments, LengthArguments):
    """The loop's and the Trainer's data settings: the same reviews and tokens for both."""
    max_train_samples: int | None = setting(None, "use only the first N training reviews (quick runs)", at_least=1)
    max_eval_samples: int | None = setting(None, "use only the first N validation reviews", at_least=1)
    max_test_samples: int | None = setting(None, "use only the first N test reviews", at_least=1)
    cache_dir: str | None = setting(".cache/tokenized", "where tokenised splits are cached; none: tokenise each run")


LIMIT_KEYS = {"train": "max_train_samples", "validation": "max_eval_samples", "test": "max_test_samples"}


def limit_splits(splits: dict[str, pd.DataFrame], limits: dict[str, int | None]) -> dict[str, pd.DataFrame]:
    """Take the first n rows of each split (splits are already shuffled, so this is a random sample)."""
    out = {}
    for name, df in splits.items():
        n = limits.get(name)
        df = df if n is None else df.head(n)
        if len(df) == 0:
            key = LIMIT_KEYS.get(name, name)
            raise DataError(f"the {name} split is empty" + (f" after {key}={n}" if n is not None else ""))
        out[name] = df.reset_index(drop=True)
    return out


def tokenizer_fingerprint(tokenizer) -> str:
    """What decides the token ids: the backend's model, normaliser and templates, not its call-time settings."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)  # set by each call with truncation=True: not part of the identity
        spec.pop("padding", None)
        vocab = json.dumps(spec, sort_keys=True)
    else:
        vocab = repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(f"{type(tokenizer).__name__}\0{tokenizer.truncation_side}\0{vocab}".encode()).hexdigest()


def tokenize(df: pd.DataFrame, tokenizer, max_length: int) -> datasets.Dataset:
    enc = tokenizer(list(df["text"]), truncation=True, max_length=max_length)
    columns = {k: enc[k] for k in ("input_ids", "token_type_ids") if k in enc}
    columns["labels"] = df["label"].astype("int64").tolist()
    columns["length"] = [len(ids) for ids in enc["input_ids"]]
    return datasets.Dataset.from_dict(columns)


def cache_paths(splits: dict[str, pd.DataFrame], tokenizer, max_length: int, cache_dir: str | Path) -> dict:
    """Where each split's tokens are cached: named by the texts, the tokenizer and the length."""
    fingerprint = tokenizer_fingerprint(tokenizer)
    paths = {}
    for name, df in splits.items():
        key = hashlib.sha256(f"{fingerprint}\0{max_length}\0{split_hash(df)}".encode()).hexdigest()[:20]
        paths[name] = Path(cache_dir) / f"{name}-{len(df)}-{key}"
    return paths


def tokenize_splits(splits: dict[str, pd.DataFrame], tokenizer, max_length: int,
                    cache_dir: str | Path | None) -> dict[str, datasets.Dataset]:
    """Tokenised splits, read from cache_dir when the same texts were tokenised the same way before."""
    if cache_dir is None:
        return {name: tokenize(df, tokenizer, max_length) for name, df in splits.items()}
    out = {}
    for (name, df), path in zip(splits.items(), cache_paths(splits, tokenizer, max_length, cache_dir).values()):
        if not path.is_dir():
            with atomic_folder(path) as tmp:  # a crash mid-write leaves no partial cache entry
                tokenize(df, tokenizer, max_length).save_to_disk(str(tmp))
        out[name] = datasets.load_from_disk(str(path))
    return out


def padded_tokens(batches, lengths) -> float:
    """Mean tokens per review once each batch is padded to its longest review."""
    return sum(len(b) * int(lengths[b].max()) for b in batches) / len(lengths)


def padding_record(lengths, batch_size: int, seed: int, max_length: int) -> dict:
    """Tokens per review after truncation, and what each batching feeds the model per review with its padding
    (one epoch's batches): what length-grouped batching saves on these reviews."""
    lengths = np.asarray(lengths)
    return {
        "mean_tokens": float(lengths.mean()), "share_truncated": float((lengths >= max_length).mean()),
        "padded_tokens_per_review": {
            "length_grouped": padded_tokens(LengthGroupedBatches(lengths, batch_size, seed), lengths),
            "random": padded_tokens(RandomBatches(lengths, batch_size, seed), lengths),
            "pad_to_max_length": float(max_length)}}


class LengthGroupedBatches:
    """Batches of similar-length examples, in shuffled order; every example exactly once per epoch.

    Each epoch: shuffle all indices, cut them into groups of `group_batches` batches, sort each group by length,
    cut it into batches, shuffle the batches. Dynamic padding then pads each batch only to its own longest
    example, while the order stays random at the scale of groups.

    Ours, not transformers' LengthGroupedSampler: a batch sampler whose order is a function of (seed, epoch) alone,
    so that a run resumed mid-epoch replays the same batches and skips the ones it trained (exact resume).
    """

    def __init__(self, lengths, batch_size: int, seed: int, group_batches: int = 50):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.group_batches = batch_size, seed, group_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        group = self.batch_size * self.group_batches
        batches = []
        for start in range(0, len(order), group):
            idx = order[start:start + group]
            idx = idx[np.argsort(-self.lengths[idx], kind="stable")]
            batches += [idx[i:i + self.batch_size].tolist() for i in range(0, len(idx), self.batch_size)]
        for i in rng.permutation(len(batches)):
            yield batches[i]


class RandomBatches(LengthGroupedBatches):
    """Plain shuffled batches (no length grouping), for comparison."""

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.lengths)).tolist()
        for i in range(0, len(order), self.batch_size):
            yield order[i:i + self.batch_size]


def sorted_batches(lengths, batch_size: int) -> list[list[int]]:
    """Evaluation batches: examples sorted by length, so padding is minimal; order does not matter there."""
    idx = np.argsort(-np.asarray(lengths), kind="stable").tolist()
    return [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]


def padding_collator(tokenizer, pad_to: int | None = None):
    """Pads tokenised examples into tensors with transformers' DataCollatorWithPadding: to the longest in the batch,
    or always to pad_to. It also takes a column-wise slice (what dataset[list_of_indices] returns), and leaves out the
    length column, which the samplers read and the model does not take."""
    from transformers import DataCollatorWithPadding

    pad = DataCollatorWithPadding(tokenizer, padding="max_length" if pad_to else "longest", max_length=pad_to)

    def collate(rows: list[dict] | dict[str, list]) -> dict[str, torch.Tensor]:
        if isinstance(rows, dict):
            rows = [dict(zip(rows, values)) for values in zip(*rows.values())]
        return dict(pad([{k: v for k, v in row.items() if k != "length"} for row in rows]))
    return collate
