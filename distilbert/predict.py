"""Classify reviews with a fine-tuned model folder (best_model/ of a run, or any sequence classifier).

    python -m distilbert.predict --model runs/distilbert_loop/best_model --text "A wonderful film, well acted."
    python -m distilbert.predict --model PATH --file reviews.txt           # one review per line
    python -m distilbert.predict --model PATH --file reviews.parquet --column text   # or .csv

Prints one line per text: label, probability of that label, the start of the text.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from common.config import UserError, first_line, parse, run_main, setting
from common.data import clean_text
from distilbert.data import LengthArguments, padding_collator, sorted_batches


def read_texts(path: str, column: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{file}: file not found")
    if file.suffix in (".parquet", ".csv"):
        df = pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(file)
        if column not in df.columns:
            raise UserError(f"{file}: no column {column!r} (found: {', '.join(map(str, df.columns))})")
        return df[column].astype(str).tolist()
    return [line for line in file.read_text().splitlines() if line.strip()]


def load_classifier(path: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not Path(path).is_dir():
        raise UserError(f"model folder not found: {path}")
    try:
        return AutoTokenizer.from_pretrained(path), AutoModelForSequenceClassification.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load a sequence classifier from {path}: {first_line(e)}") from None


def predict(model, tokenizer, texts: list[str], batch_size: int = 32, max_length: int = 512) -> list[tuple[str, float]]:
    """(label, probability) per text, in input order; batches are formed by length to pad little."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    enc = tokenizer([clean_text(t) for t in texts], truncation=True, max_length=max_length)
    rows = [{"input_ids": ids, "labels": 0} for ids in enc["input_ids"]]
    collate = padding_collator(tokenizer)
    out: list[tuple[str, float] | None] = [None] * len(texts)
    with torch.no_grad():
        for idx in sorted_batches([len(r["input_ids"]) for r in rows], batch_size):
            batch = collate([rows[i] for i in idx])
            batch.pop("labels")
            probs = model(**{k: v.to(device) for k, v in batch.items()}).logits.softmax(-1).cpu()
            for i, p in zip(idx, probs):
                label = int(p.argmax())
                out[i] = (model.config.id2label.get(label, str(label)), float(p[label]))
    return out


@dataclass
class PredictArguments(LengthArguments):
    model: str | None = setting(None, "a model folder, e.g. runs/distilbert_loop/best_model")
    text: str | None = setting(None, "one review")
    file: str | None = setting(None, "a .txt (one review per line), .parquet or .csv file")
    column: str = setting("text", "the text column of a .parquet or .csv file")
    batch_size: int = setting(32, "reviews per forward pass", at_least=1)


SETTINGS = (PredictArguments,)


def main(argv=None) -> list[tuple[str, float]]:
    (args,) = parse(SETTINGS, argv)
    if not args.model:
        raise UserError("model: give a model folder, e.g. runs/distilbert_loop/best_model")
    texts = ([args.text] if args.text else []) + (read_texts(args.file, args.column) if args.file else [])
    if not texts:
        raise UserError("no review: give one with --text, or a file with --file")
    tokenizer, model = load_classifier(args.model)
    results = predict(model, tokenizer, texts, args.batch_size, args.max_length)
    for text, (label, prob) in zip(texts, results):
        snippet = " ".join(text.split())
        print(f"{label}\t{prob:.4f}\t{snippet[:70] + '...' if len(snippet) > 70 else snippet}")
    return results


if __name__ == "__main__":
    run_main(main)
