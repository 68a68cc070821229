"""Synthetic IMDB-like reviews for tests and the demo: separable by sentiment words, with <br /> tags and duplicates.

Never real reviews: every text is made up from the word lists below.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

NEUTRAL = ("the movie film plot actor scene story director camera music script cast ending character "
           "was is and a of it this that with watched saw minutes").split()
POSITIVE = "great wonderful brilliant moving superb delightful excellent loved".split()
NEGATIVE = "awful boring terrible dull waste worst poor hated".split()


def review(rng: np.random.Generator, label: int, n_words: int) -> str:
    sentiment = POSITIVE if label else NEGATIVE
    words = list(rng.choice(NEUTRAL, size=n_words))
    for i in rng.choice(n_words, size=max(1, n_words // 6), replace=False):
        words[i] = str(rng.choice(sentiment))
    text = " ".join(words)
    if rng.random() < 0.3:
        cut = len(text) // 2
        text = text[:cut] + " <br /><br />" + text[cut:]
    return text


def make_imdb(n_train: int = 400, n_test: int = 400, seed: int = 0, n_dup: int = 10,
              min_words: int = 8, max_words: int = 40) -> dict[str, pd.DataFrame]:
    """Half-positive train and test sets, with n_dup repeated texts inside train and n_dup shared with test."""
    rng = np.random.default_rng(seed)

    def split(n: int, tag: str) -> pd.DataFrame:
        labels = np.array([0, 1] * (n // 2))
        texts = [f"{tag}{i} " + review(rng, int(y), int(rng.integers(min_words, max_words)))
                 for i, y in enumerate(labels)]
        return pd.DataFrame({"text": texts, "label": labels.astype("int64")})

    train, test = split(n_train, "tr"), split(n_test, "te")
    if n_dup:
        train.loc[len(train) - n_dup:, ["text", "label"]] = train.loc[: n_dup - 1, ["text", "label"]].to_numpy()
        test.loc[: n_dup - 1, ["text", "label"]] = train.loc[n_dup: 2 * n_dup - 1, ["text", "label"]].to_numpy()
    return {"train": train.astype({"label": "int64"}), "test": test.astype({"label": "int64"})}


def write_imdb(folder: Path, **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in make_imdb(**kwargs).items():
        df.to_parquet(folder / f"{name}.parquet", index=False)
    return folder
