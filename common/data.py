"""IMDB loading, cleaning and the three split protocols used by the experiments; run, it exports one split.

    python -m common.data --protocol random_70_10_20 --split_seed 42 --out splits/random   # or: make export-splits

Data comes from the Hugging Face Hub (`stanfordnlp/imdb`) by default, or from a local folder holding
`train.parquet` and `test.parquet` (columns `text`, `label`), chosen with `data_dir` or `IMDB_DATA_DIR`.

Protocols (every split is a DataFrame with columns `text`, `label`; names are train / validation / test):
- random_70_10_20: pool all 50k reviews, drop duplicate texts, stratified seeded 70/10/20 split (DistilBERT).
- official: the official 25k test set; 10% of the official train set (stratified) as validation; train loses
  its duplicates and every text that also occurs in test.
- balanced: n_train + n_eval reviews from the official train set, n_test from the official test set, each
  exactly half positive, no test text in train or validation (Mistral).

Splits are byte-identical for a seed on any machine: rows are put in a canonical order (sorted by text) before
numpy's PCG64 generator shuffles them, so neither the source's row order nor the platform matters.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from common.config import ConfigError, UserError, first_line, parse, run_main, setting
from common.io import atomic_write, write_json

HUB_ID = "stanfordnlp/imdb"
PROTOCOLS = ("random_70_10_20", "official", "balanced")
LABEL_NAMES = ("negative", "positive")


# ---------------------------------------------------------------- settings shared by every script that reads IMDB

@dataclass
class ImdbArguments:
    data_dir: str | None = setting(None, "folder with train/test.parquet; else $IMDB_DATA_DIR; else the Hub")
    # kept apart from the training seed, so that runs over seeds score one test set
    split_seed: int = setting(42, "seed of the train/validation/test split (`seed` is the training run's)", at_least=0)


@dataclass
class SplitArguments(ImdbArguments):
    protocol: Literal["random_70_10_20", "official", "balanced"] = setting("random_70_10_20", "split protocol")


@dataclass
class BalancedArguments(ImdbArguments):
    n_train: int = setting(900, "balanced protocol: training reviews (from the official train set)", at_least=2)
    n_eval: int = setting(100, "balanced protocol: eval reviews (official train set, none in training)", at_least=2)
    n_test: int = setting(2500, "balanced protocol: test reviews (from the official test set)", at_least=2)

    def __post_init__(self):
        for key in ("n_train", "n_eval", "n_test"):  # each split is exactly half positive
            if getattr(self, key) % 2:
                raise ConfigError(f"{key}: expected an even number (half positive, half negative), "
                                  f"got {getattr(self, key)}")


class DataError(UserError):
    pass


# ---------------------------------------------------------------- loading and validation

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def clean_text(text: str) -> str:
    """`<br />` tags become line breaks, runs of spaces one space, at most one blank line in a row."""
    text = _BR.sub("\n", text)
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def resolve_data_dir(data_dir: str | os.PathLike | None) -> str | None:
    """The explicit folder, else $IMDB_DATA_DIR, else None (meaning: the Hub)."""
    return str(data_dir) if data_dir else os.environ.get("IMDB_DATA_DIR") or None


def check_and_clean(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Check the schema and values of one raw split; return it cleaned, with int labels."""
    missing = [c for c in ("text", "label") if c not in df.columns]
    if missing:
        raise DataError(f"{name}: missing column(s) {', '.join(missing)} (found: {', '.join(map(str, df.columns))})")
    if len(df) == 0:
        raise DataError(f"{name}: no rows")
    labels = pd.to_numeric(df["label"], errors="coerce")
    bad = labels.isna() | ~labels.isin([0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{name}: label {df['label'].tolist()[row]!r} at row {row} is outside {{0, 1}}")
    texts = df["text"]
    not_str = ~texts.map(lambda t: isinstance(t, str))
    if not_str.any():
        row = int(np.flatnonzero(not_str.to_numpy())[0])
        raise DataError(f"{name}: text at row {row} is {texts.iloc[row]!r}, expected a string")
    cleaned = texts.map(clean_text)
    empty = cleaned.str.len() == 0
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        raise DataError(f"{name}: empty text at row {row}")
    return pd.DataFrame({"text": cleaned.to_numpy(), "label": labels.astype("int64").to_numpy()})


def read_split_file(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected train.parquet and test.parquet in {path.parent})")
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for corrupt or non-parquet files
        raise DataError(f"{path}: cannot read as parquet ({first_line(e)})") from None
    return check_and_clean(df, str(path))


def load_imdb(data_dir: str | os.PathLike | None = None) -> dict[str, pd.DataFrame]:
    """The official labelled train and test sets, validated and cleaned, as {'train': df, 'test': df}."""
    data_dir = resolve_data_dir(data_dir)
    if data_dir is None:
        import datasets

        ds = datasets.load_dataset(HUB_ID)
        return {s: check_and_clean(ds[s].to_pandas(), f"{HUB_ID}:{s}") for s in ("train", "test")}
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: data folder not found (expected a folder with train.parquet and test.parquet)")
    return {s: read_split_file(folder / f"{s}.parquet") for s in ("train", "test")}


# ---------------------------------------------------------------- split helpers

def text_key(texts: pd.Series) -> pd.Series:
    """Texts as compared for duplicates: their words, whitespace collapsed. Reviews that differ only in line breaks
    or spacing are the same review (IMDB has such pairs; compared as written, one of them crossed the splits)."""
    return texts.str.split().str.join(" ")


def dedupe(df: pd.DataFrame) -> pd.DataFrame:
    """Keep one copy of each text; a text seen with both labels is ambiguous and dropped entirely."""
    key = text_key(df["text"])
    n_labels = df["label"].groupby(key).transform("nunique")
    return df[(n_labels == 1) & ~key.duplicated(keep="first")]


def drop_texts_of(df: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """The rows of df whose text (compared as in dedupe) is not in other: no review in two splits."""
    return df[~text_key(df["text"]).isin(set(text_key(other["text"])))]


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by (text, label): the same order whatever order the source had."""
    return df.sort_values(["text", "label"], kind="stable").reset_index(drop=True)


def _shuffle(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    return df.iloc[rng.permutation(len(df))].reset_index(drop=True)


def stratified_split(df: pd.DataFrame, fractions: list[float], seed: int) -> list[pd.DataFrame]:
    """Split each class by the same fractions (the last part takes the rest), then shuffle each part."""
    rng = np.random.default_rng(seed)
    df = canonical(df)
    parts: list[list[pd.DataFrame]] = [[] for _ in fractions]
    for label in (0, 1):
        rows = df[df["label"] == label]
        rows = rows.iloc[rng.permutation(len(rows))]
        bounds = np.round(np.cumsum([0.0, *fractions]) * len(rows)).astype(int)
        bounds[-1] = len(rows)
        for i in range(len(fractions)):
            parts[i].append(rows.iloc[bounds[i]:bounds[i + 1]])
    return [_shuffle(pd.concat(p), rng) for p in parts]


def balanced_sample(df: pd.DataFrame, sizes: list[int], seed: int, name: str) -> list[pd.DataFrame]:
    """Disjoint samples of the given sizes, each exactly half positive."""
    for size in sizes:
        if size <= 0 or size % 2:
            raise DataError(f"balanced split sizes must be positive and even, got {size}")
    rng = np.random.default_rng(seed)
    df = canonical(df)
    parts: list[list[pd.DataFrame]] = [[] for _ in sizes]
    for label in (0, 1):
        rows = df[df["label"] == label]
        need = sum(sizes) // 2
        if len(rows) < need:
            raise DataError(f"{name}: {need} {LABEL_NAMES[label]} reviews needed, only {len(rows)} available")
        rows = rows.iloc[rng.permutation(len(rows))[:need]]
        start = 0
        for i, size in enumerate(sizes):
            parts[i].append(rows.iloc[start:start + size // 2])
            start += size // 2
    return [_shuffle(pd.concat(p), rng) for p in parts]


# ---------------------------------------------------------------- protocols

def make_splits(
    protocol: str = "random_70_10_20",
    seed: int = 42,
    data_dir: str | os.PathLike | None = None,
    *,
    n_train: int = 900,
    n_eval: int = 100,
    n_test: int = 2500,
    raw: dict[str, pd.DataFrame] | None = None,
) -> tuple[dict[str, pd.DataFrame], dict]:
    """Build the splits of a protocol; returns ({'train','validation','test'}: DataFrame, manifest).

    n_train / n_eval / n_test are used by the balanced protocol only. Ours, not datasets' train_test_split: it
    deduplicates texts across the official sets and orders rows canonically before a seeded shuffle, so a split is
    byte-identical for a seed on any machine and from any source (the Hub or parquet files).
    """
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
    folder = resolve_data_dir(data_dir)
    source = "in-memory" if raw is not None else str(Path(folder).resolve()) if folder else HUB_ID
    raw = raw if raw is not None else load_imdb(folder)
    train, test = raw["train"], raw["test"]
    if protocol == "random_70_10_20":
        pool = dedupe(pd.concat([train, test], ignore_index=True))
        parts = stratified_split(pool, [0.7, 0.1, 0.2], seed)
    elif protocol == "official":
        train = drop_texts_of(dedupe(train), test)
        val, train_part = stratified_split(train, [0.1, 0.9], seed)
        parts = [train_part, val, _shuffle(canonical(test), np.random.default_rng(seed))]
    else:
        test = dedupe(test)
        train = drop_texts_of(dedupe(train), test)
        train_part, val = balanced_sample(train, [n_train, n_eval], seed, "official train set")
        (test_part,) = balanced_sample(test, [n_test], seed, "official test set")
        parts = [train_part, val, test_part]
    splits = dict(zip(("train", "validation", "test"), parts))
    return splits, make_manifest(splits, protocol, seed, source)


def split_hash(df: pd.DataFrame) -> str:
    """sha256 of the ordered (label, text) rows."""
    h = hashlib.sha256()
    for text, label in zip(df["text"], df["label"]):
        h.update(f"{int(label)}\0{text}\0".encode())
    return h.hexdigest()


def make_manifest(splits: dict[str, pd.DataFrame], protocol: str, seed: int, source: str) -> dict:
    def describe(df: pd.DataFrame) -> dict:
        n_pos = int(df["label"].sum())
        return {
            "size": len(df),
            "label_counts": {"0": len(df) - n_pos, "1": n_pos},
            "positive_share": n_pos / len(df) if len(df) else None,
            "sha256": split_hash(df),
        }

    return {"protocol": protocol, "seed": seed, "source": source,
            "splits": {name: describe(df) for name, df in splits.items()}}


def summary_line(name: str, info: dict) -> str:
    share = info["positive_share"]
    return f"{name:<10} {info['size']:>6,} reviews  {100 * share:5.1f}% positive  sha256 {info['sha256'][:12]}"


# ---------------------------------------------------------------- export command

def export(protocol: str, seed: int, out: str | Path, data_dir=None, **sizes) -> dict:
    splits, manifest = make_splits(protocol, seed, data_dir, **sizes)
    out = Path(out)
    for name, df in splits.items():
        atomic_write(out / f"{name}.parquet", lambda tmp, df=df: df.to_parquet(tmp, index=False))
    write_json(out / "manifest.json", manifest)
    return manifest


@dataclass
class ExportArguments(SplitArguments, BalancedArguments):
    out: str = setting("splits", "the folder that gets one parquet per split and manifest.json")


SETTINGS = (ExportArguments,)


def main(argv=None) -> None:
    (args,) = parse(SETTINGS, argv)
    manifest = export(args.protocol, args.split_seed, args.out, args.data_dir,
                      n_train=args.n_train, n_eval=args.n_eval, n_test=args.n_test)
    for name, info in manifest["splits"].items():
        print(summary_line(name, info))
    print(f"wrote {args.out}/{{train,validation,test}}.parquet and manifest.json "
          f"({manifest['protocol']}, seed {args.split_seed})")


if __name__ == "__main__":
    run_main(main)
