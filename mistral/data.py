"""The Mistral experiment's data: balanced subsets of IMDB, declared once for training and evaluation, so that a
training run and a later evaluation with the same settings and seed score the same test reviews."""
from __future__ import annotations

from dataclasses import dataclass

from common.config import setting
from common.data import SPLIT_SEED_HELP, make_splits


@dataclass
class DataArguments:
    data_dir: str | None = setting(None, "folder with train/test.parquet; else $IMDB_DATA_DIR; else the Hub")
    n_train: int = setting(900, "balanced training reviews (from the official train set)")
    n_eval: int = setting(100, "balanced eval reviews (official train set, none in training)")
    n_test: int = setting(2500, "balanced test reviews (from the official test set)")
    split_seed: int = setting(42, SPLIT_SEED_HELP)


def balanced_splits(args: DataArguments):
    """(splits, manifest) of the balanced protocol: exactly half-positive train, validation and test."""
    return make_splits("balanced", args.split_seed, args.data_dir, args.n_train, args.n_eval, args.n_test)
