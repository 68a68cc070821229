"""TF-IDF + logistic regression: the classical reference that fine-tuning has to beat.

    make baseline                                   # random_70_10_20 split, reads DATA_DIR / $IMDB_DATA_DIR / the Hub
    python -m baseline.tfidf --config configs/baseline.yaml --protocol official --data_dir ../shared/data/imdb

The regularisation strength C is chosen on the validation split; test is scored once, with the chosen C.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from common.config import parse, run_main, setting, to_dict
from common.data import SplitArguments, make_splits, summary_line
from common.metrics import classification_metrics, scalar_metrics
from common.predictions import write_predictions
from common.run_folder import RunLogger, run_folder_setting
from common.trackers import TrackingArguments


@dataclass
class BaselineConfig(SplitArguments, TrackingArguments):
    seed: int = setting(42, "seed of the logistic regression (liblinear's coordinate order)", at_least=0)
    output_dir: str = run_folder_setting("runs/baseline")
    ngram_max: int = setting(2, "word n-grams 1..ngram_max", at_least=1)
    min_df: int = setting(2, "ignore n-grams seen in fewer documents", at_least=1)
    max_features: int | None = setting(None, "keep only the N most frequent n-grams", at_least=1)
    sublinear_tf: bool = setting(True, "1 + log(tf) instead of raw counts")
    C: list[float] = setting([1.0, 4.0, 16.0, 64.0], "inverse regularisation strengths tried on validation", above=0)
    max_iter: int = setting(1000, "logistic regression's iterations at most", at_least=1)


def fit_and_score(cfg: BaselineConfig, splits: dict) -> dict:
    vectorizer = TfidfVectorizer(ngram_range=(1, cfg.ngram_max), min_df=cfg.min_df,
                                 max_features=cfg.max_features, sublinear_tf=cfg.sublinear_tf)
    x_train = vectorizer.fit_transform(splits["train"]["text"])
    x_val = vectorizer.transform(splits["validation"]["text"])
    x_test = vectorizer.transform(splits["test"]["text"])
    y_train, y_val = splits["train"]["label"].to_numpy(), splits["validation"]["label"].to_numpy()

    best = None
    for c in cfg.C:
        model = LogisticRegression(C=c, max_iter=cfg.max_iter, solver="liblinear", random_state=cfg.seed)
        model.fit(x_train, y_train)
        val = classification_metrics(y_val, model.predict(x_val))
        print(f"C={c:g}: validation accuracy {val['accuracy']:.4f}")
        if best is None or val["accuracy"] > best[1]["accuracy"]:
            best = (model, val, c)
    model, val, c = best
    p_positive = model.predict_proba(x_test)[:, list(model.classes_).index(1)]
    predictions = (p_positive > 0.5).astype(int)  # what model.predict gives, with the score kept for the errors list
    test = classification_metrics(splits["test"]["label"], predictions)
    return {"best_C": c, "n_features": x_train.shape[1], "validation": val, "test": test,
            "test_predictions": (predictions, p_positive)}


SETTINGS = (BaselineConfig,)


def main(argv=None) -> dict:
    (cfg,) = parse(SETTINGS, argv)
    start = time.perf_counter()
    splits, manifest = make_splits(cfg.protocol, cfg.split_seed, cfg.data_dir)
    for name, info in manifest["splits"].items():
        print(summary_line(name, info))
    logger = RunLogger(cfg.output_dir, to_dict(cfg), cfg.report_to, run_name=cfg.run_name)
    scores = fit_and_score(cfg, splits)
    predictions, p_positive = scores.pop("test_predictions")
    write_predictions(Path(cfg.output_dir) / "predictions.parquet", splits["test"]["text"].tolist(),
                      splits["test"]["label"].tolist(), predictions, p_positive)
    logger.log({f"eval/{k}": v for k, v in scalar_metrics(scores["validation"]).items()}, step=0)
    logger.log({f"test/{k}": v for k, v in scalar_metrics(scores["test"]).items()}, step=0)
    results = {"script": "baseline.tfidf", "model": f"tfidf(1-{cfg.ngram_max}gram)+logreg", **scores,
               "manifest": manifest, "num_processes": 1,  # scikit-learn in this one process, under a launcher too
               "wall_time_s": round(time.perf_counter() - start, 1)}
    logger.finish(results)
    t = scores["test"]
    print(f"test accuracy {t['accuracy']:.4f}  macro F1 {t['f1']:.4f}  confusion [[tn, fp], [fn, tp]] "
          f"{t['confusion_matrix']}  ({results['wall_time_s']}s)  -> {cfg.output_dir}/results.json")
    return results


if __name__ == "__main__":
    run_main(main)
