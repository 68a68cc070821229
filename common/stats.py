"""Error bars for classification results: library statistics (scipy, numpy), not hand-written tests. The few lines
here are what scipy leaves to its caller: the interval of macro F1 from confusion counts, McNemar's test as a
binomial test on the discordant pairs.

- wilson_interval: the 95% interval of a proportion (accuracy), Wilson's score method (scipy.stats.binomtest).
- bootstrap_f1_interval: the 95% percentile interval of macro F1 over bootstrap resamples of the test set
  (numpy, fixed seed, so the same predictions always give the same interval), drawn as multinomial counts.
- mcnemar_exact: McNemar's exact test of two classifiers on the same examples: among the examples exactly one of
  them gets right, is each equally likely to be the one? (a two-sided binomial test on the discordant pairs).
"""
from __future__ import annotations

import numpy as np


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    from scipy.stats import binomtest

    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def macro_f1_from_counts(tp, fp, fn, tn):
    """Macro F1 over the two classes from confusion counts (arrays allowed); a class with no support scores 0."""
    f1_pos = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    f1_neg = np.where(2 * tn + fn + fp > 0, 2 * tn / np.maximum(2 * tn + fn + fp, 1), 0.0)
    return (f1_pos + f1_neg) / 2


def bootstrap_f1_interval(labels, predictions, n_resamples: int = 1000, seed: int = 0,
                          confidence: float = 0.95) -> tuple[float, float]:
    labels, predictions = np.asarray(labels, dtype=int), np.asarray(predictions, dtype=int)
    counts = np.bincount(labels * 2 + predictions, minlength=4)  # tn, fp, fn, tp
    return counts_f1_interval(counts, n_resamples, seed, confidence)


def counts_f1_interval(counts, n_resamples: int = 1000, seed: int = 0,
                       confidence: float = 0.95) -> tuple[float, float]:
    """The bootstrap interval of macro F1 from the counts (tn, fp, fn, tp): resampling n examples with replacement
    is a multinomial draw of the four counts, so no example-level array is needed (milliseconds for any n)."""
    counts = np.asarray(counts, dtype=int)
    n = int(counts.sum())
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=n_resamples)
    scores = macro_f1_from_counts(tp=draws[:, 3], fp=draws[:, 1], fn=draws[:, 2], tn=draws[:, 0])
    low, high = np.quantile(scores, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def confusion_intervals(confusion_matrix) -> dict:
    """accuracy_ci95 (Wilson) and f1_ci95 (bootstrap) of a 2x2 confusion matrix [[tn, fp], [fn, tp]]: both depend
    only on the counts, so a run that recorded its confusion matrix has its intervals."""
    (tn, fp), (fn, tp) = confusion_matrix
    return {"accuracy_ci95": list(wilson_interval(tn + tp, tn + fp + fn + tp)),
            "f1_ci95": list(counts_f1_interval([tn, fp, fn, tp]))}


def mcnemar_exact(a_correct, b_correct) -> dict:
    """b: examples A gets right and B wrong; c: the reverse. p-value of the exact two-sided test that b and c
    come from a fair coin (1.0 when the two never disagree)."""
    from scipy.stats import binomtest

    a_correct, b_correct = np.asarray(a_correct, dtype=bool), np.asarray(b_correct, dtype=bool)
    if a_correct.shape != b_correct.shape:
        raise ValueError(f"{len(a_correct)} against {len(b_correct)} examples: McNemar needs the same examples")
    b, c = int((a_correct & ~b_correct).sum()), int((~a_correct & b_correct).sum())
    p = binomtest(min(b, c), b + c, 0.5).pvalue if b + c else 1.0
    return {"a_only_correct": b, "b_only_correct": c, "p_value": float(p)}
