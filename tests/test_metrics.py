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


def test_compute_metrics_takes_the_logits_out_of_a_tuple():
    """Models that also return hidden states give the Trainer a tuple: the logits are its first element."""
    logits = np.array([[2.0, -1.0], [0.1, 0.3], [1.0, 0.0], [-3.0, 3.0]])
    hidden = np.zeros((4, 2))  # argmax 0 everywhere: taking it instead would give 1 of 4 right
    out = compute_metrics(((logits, hidden), np.array([0, 1, 1, 1])))
    assert out["accuracy"] == pytest.approx(0.75)


def test_one_class_in_labels_and_predictions_still_scores_both_classes():
    """Macro F1 over both labels, the absent class's F1 counted as 0 without a warning (scikit-learn's
    zero_division=0), and the confusion matrix still 2x2: worked out by hand."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics([1, 1, 1], [1, 1, 1])
    assert m["f1"] == 0.5  # (F1 of class 0 = 0, F1 of class 1 = 1) / 2
    assert m["confusion_matrix"] == [[0, 0], [0, 3]]
    single = classification_metrics([0, 1, 1], [0, 1, 1])  # one negative review: its class accuracy is 1, not 1/2
    assert single["accuracy_negative"] == 1.0 and classification_metrics([1], [1])["accuracy"] == 1.0
    with pytest.raises(ValueError, match="^no examples to score$"):
        classification_metrics([], [])
