import numpy as np
import pytest

from common.metrics import classification_metrics, compute_metrics


def test_against_hand_computed_values():
    # tn=1 fp=1 fn=1 tp=2
    m = classification_metrics([0, 0, 1, 1, 1], [0, 1, 1, 1, 0])
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["accuracy_negative"] == pytest.approx(1 / 2)
    assert m["accuracy_positive"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # negative: 1/(1+1), positive: 2/(2+1)
    assert m["recall"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["f1"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["n"] == 5


def test_one_class_predicted_only():
    m = classification_metrics([0, 1, 1, 0], [1, 1, 1, 1])
    assert m["accuracy"] == 0.5
    assert m["accuracy_negative"] == 0.0 and m["accuracy_positive"] == 1.0
    assert m["f1"] == pytest.approx((0 + 2 * 0.5 * 1 / 1.5) / 2)


def test_compute_metrics_for_trainer():
    logits = np.array([[2.0, -1.0], [0.1, 0.3], [1.0, 0.0], [-3.0, 3.0]])
    out = compute_metrics((logits, np.array([0, 1, 1, 1])))
    assert out["accuracy"] == pytest.approx(0.75)
    assert all(isinstance(v, (int, float)) for v in out.values())
    assert "confusion_matrix" not in out


def test_mismatched_lengths_rejected():
    with pytest.raises(ValueError, match="3 labels but 2 predictions"):
        classification_metrics([0, 1, 1], [0, 1])
