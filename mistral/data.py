"""The Mistral experiment's data: balanced subsets of IMDB, declared once for training and evaluation, so that a
training run and a later evaluation with the same settings and seed score the same test reviews."""
from __future__ import annotations

from common.data import BalancedArguments, make_splits


def balanced_splits(args: BalancedArguments):
    """(splits, manifest) of the balanced protocol: exactly half-positive train, validation and test."""
    return make_splits("balanced", args.split_seed, args.data_dir, n_train=args.n_train, n_eval=args.n_eval,
                       n_test=args.n_test)
