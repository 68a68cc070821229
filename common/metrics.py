"""Classification metrics, one implementation for every script (scikit-learn underneath).

Labels are 0 (negative) and 1 (positive). `classification_metrics` returns:
accuracy, precision / recall / f1 (macro over the two classes), accuracy_negative, accuracy_positive
(the accuracy on each true class), confusion_matrix ([[tn, fp], [fn, tp]]: rows true, columns predicted), n, and
95% intervals: accuracy_ci95 (Wilson) and f1_ci95 (bootstrap, fixed seed).
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from common.stats import confusion_intervals


def classification_metrics(labels, predictions) -> dict:
    labels = np.asarray(labels).astype(int).ravel()
    predictions = np.asarray(predictions).astype(int).ravel()
    if labels.shape != predictions.shape:
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    if len(labels) == 0:
        raise ValueError("no examples to score")
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions, labels=[0, 1], average="macro", zero_division=0
    )
    cm = confusion_matrix(labels, predictions, labels=[0, 1])
    per_class = cm.diagonal() / np.maximum(cm.sum(axis=1), 1)
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "accuracy_negative": float(per_class[0]),
        "accuracy_positive": float(per_class[1]),
        "confusion_matrix": cm.tolist(),
        "n": int(len(labels)),
        **confusion_intervals(cm.tolist()),  # 95%: Wilson for accuracy, fixed-seed bootstrap for macro F1
    }


def scalar_metrics(metrics: dict) -> dict:
    """The metrics that are single numbers (what loggers and the HF Trainer accept)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def compute_metrics(eval_pred) -> dict:
    """For `transformers.Trainer(compute_metrics=...)`: logits and labels in, scalar metrics out."""
    logits, labels = eval_pred[0], eval_pred[1]
    if isinstance(logits, tuple):
        logits = logits[0]
    return scalar_metrics(classification_metrics(labels, np.argmax(logits, axis=-1)))
