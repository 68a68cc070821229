"""Per-example test predictions, so that two runs can be compared example by example (python -m analysis.compare),
and errors can be read (python -m analysis.report) and broken down by review length (python -m analysis.plots).

predictions.parquet: index (position in the split), text_sha256, label, prediction, score (P(positive) for the
classifiers; for label scoring, log P(positive answer) - log P(negative answer); empty for generation), words (the
review's length in whitespace-separated words) and text_start (its first 200 characters)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from common.io import atomic_write

TEXT_START_CHARS = 200


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_predictions(path: str | Path, texts, labels, predictions, scores=None) -> Path:
    frame = pd.DataFrame({"index": range(len(texts)), "text_sha256": [text_sha256(t) for t in texts],
                          "label": [int(y) for y in labels],
                          "prediction": [None if p is None else int(p) for p in predictions],
                          "score": [None] * len(texts) if scores is None else [float(s) for s in scores],
                          "words": [len(t.split()) for t in texts],
                          "text_start": [t[:TEXT_START_CHARS] for t in texts]})
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def prediction_files(run: str | Path) -> list[tuple[str, Path]]:
    """(label, file) of each test evaluation a run folder holds predictions for: ("", predictions.parquet), or
    zero-shot and tuned for a Mistral SFT run. Empty for runs made before predictions were written."""
    run = Path(run)
    if (run / "predictions_tuned.parquet").is_file():
        return [("zero-shot", run / "predictions_zero_shot.parquet"), ("tuned", run / "predictions_tuned.parquet")]
    return [("", run / "predictions.parquet")] if (run / "predictions.parquet").is_file() else []

