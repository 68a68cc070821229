import numpy as np
import pytest

from common.stats import (bootstrap_f1_interval, confusion_intervals, counts_f1_interval, macro_f1_from_counts,
                          mcnemar_exact, wilson_interval)


def test_wilson_interval_by_hand():
    # Wilson's score interval, worked by hand for 81 successes in 263 trials at z = 1.959964:
    # centre (p + z^2/2n) / (1 + z^2/n), half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)
    p, n, z = 81 / 263, 263, 1.959963984540054
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert wilson_interval(81, 263) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and 0 < high < 0.31  # stays inside [0, 1], unlike the normal approximation


def test_mcnemar_exact_textbook_cases():
    # 1 discordant pair one way, 9 the other: two-sided exact p = 2 * (C(10,0) + C(10,1)) / 2^10 = 22/1024
    a = [True] * 9 + [False] + [True] * 5
    b = [False] * 9 + [True] + [True] * 5
    assert mcnemar_exact(a, b) == {"a_only_correct": 9, "b_only_correct": 1, "p_value": pytest.approx(22 / 1024)}
    assert mcnemar_exact([True, False], [True, False])["p_value"] == 1.0  # never disagree
    balanced = mcnemar_exact([True] * 5 + [False] * 5, [False] * 5 + [True] * 5)
    assert balanced["p_value"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same examples"):
        mcnemar_exact([True], [True, False])


def test_macro_f1_from_counts_matches_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 2, 500), rng.integers(0, 2, 500)
    tp, fp = ((labels == 1) & (preds == 1)).sum(), ((labels == 0) & (preds == 1)).sum()
    fn, tn = ((labels == 1) & (preds == 0)).sum(), ((labels == 0) & (preds == 0)).sum()
    assert macro_f1_from_counts(tp, fp, fn, tn) == pytest.approx(f1_score(labels, preds, average="macro"))


def test_bootstrap_f1_interval_is_fixed_and_shrinks_with_n():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 4000)
    preds = np.where(rng.random(4000) < 0.9, labels, 1 - labels)  # 90% right
    small = bootstrap_f1_interval(labels[:400], preds[:400])
    large = bootstrap_f1_interval(labels, preds)
    assert small == bootstrap_f1_interval(labels[:400], preds[:400])  # fixed seed: same interval every time
    assert small[0] < 0.9 < small[1] and large[0] < 0.9 < large[1]
    # a percentile interval's width scales as 1/sqrt(n): 10x the examples, about a third of the width
    assert 0.2 < (large[1] - large[0]) / (small[1] - small[0]) < 0.45


def test_intervals_of_a_confusion_matrix_match_reference_implementations():
    """80 of 100 right: Wilson's interval worked by hand, and the F1 interval against scipy's percentile bootstrap
    over the examples themselves (resampling (label, prediction) pairs), which the count-based draw must match."""
    from scipy.stats import bootstrap
    from sklearn.metrics import f1_score

    from common.stats import confusion_intervals

    labels = np.array([0] * 60 + [1] * 40)
    preds = np.array([0] * 50 + [1] * 10 + [1] * 30 + [0] * 10)
    got = confusion_intervals([[50, 10], [10, 30]])
    p, n, z = 0.8, 100, 1.959963984540054
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (
        1 + z * z / n)
    assert got["accuracy_ci95"] == pytest.approx([centre - half, centre + half], abs=1e-12)
    reference = bootstrap((labels, preds), lambda y, q: f1_score(y, q, average="macro"), paired=True,
                          vectorized=False, n_resamples=2000, method="percentile", random_state=0).confidence_interval
    assert got["f1_ci95"] == pytest.approx([reference.low, reference.high], abs=0.02)
    assert got["f1_ci95"][0] < f1_score(labels, preds, average="macro") < got["f1_ci95"][1]


def test_mcnemar_takes_correctness_as_0_and_1_too():
    """Correctness read from a 0/1 column (as from a predictions file): the same counts and p-value as booleans."""
    a = [1] * 9 + [0] + [1] * 5
    b = [0] * 9 + [1] + [1] * 5
    assert mcnemar_exact(a, b) == {"a_only_correct": 9, "b_only_correct": 1, "p_value": pytest.approx(22 / 1024)}
    assert mcnemar_exact(np.array(a), b)["a_only_correct"] == 9 and mcnemar_exact(a, np.array(b))["b_only_correct"] == 1


def test_bootstrap_f1_interval_takes_float_labels_a_missing_cell_and_its_confidence():
    """Labels as floats (a parquet column with a missing value is float), no true positive at all (a 2x2 table with
    an empty cell), and a confidence other than 95%: the counts-based interval against scipy's bootstrap."""
    from scipy.stats import bootstrap
    from sklearn.metrics import f1_score

    labels = np.array([0.0] * 60 + [1.0] * 40)
    preds = np.array([0.0] * 50 + [1.0] * 10 + [0.0] * 40)  # no label-1 review predicted 1: tp = 0
    low, high = bootstrap_f1_interval(labels, preds, n_resamples=4000, confidence=0.8)
    reference = bootstrap((labels.astype(int), preds.astype(int)),
                          lambda y, q: f1_score(y, q, average="macro", zero_division=0), paired=True,
                          vectorized=False, n_resamples=2000, method="percentile", confidence_level=0.8,
                          random_state=0).confidence_interval
    assert (low, high) == pytest.approx((reference.low, reference.high), abs=0.02)
    wide = bootstrap_f1_interval(labels, preds, n_resamples=4000, confidence=0.99)
    assert wide[0] < low and wide[1] > high


@pytest.mark.parametrize("tp, fp, fn, tn", [(1, 0, 3, 0), (1, 3, 0, 0), (0, 3, 0, 1), (0, 0, 3, 1), (3, 0, 0, 0),
                                            (0, 0, 0, 3), (0, 2, 0, 0), (2, 1, 0, 5)])
def test_macro_f1_from_counts_on_small_tables_matches_sklearn(tp, fp, fn, tn):
    """Small and one-sided tables (a class never predicted, or never present), without a warning, against
    scikit-learn's macro F1 over both labels with zero_division=0."""
    import warnings

    from sklearn.metrics import f1_score

    labels = [1] * tp + [0] * fp + [1] * fn + [0] * tn
    preds = [1] * tp + [1] * fp + [0] * fn + [0] * tn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = macro_f1_from_counts(*(np.array([v]) for v in (tp, fp, fn, tn)))
    assert got[0] == pytest.approx(f1_score(labels, preds, labels=[0, 1], average="macro", zero_division=0))


def test_wilson_interval_at_another_confidence_by_hand():
    low, high = wilson_interval(80, 100, confidence=0.9)
    p, n, z = 0.8, 100, 1.6448536269514722
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (
        1 + z * z / n)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-12)


def test_the_f1_interval_is_95_percent_by_default_against_an_independent_bootstrap():
    """160 of 200 right. The reference resamples the 200 (label, prediction) pairs 40,000 times and computes macro F1
    by hand; its 95% and 90% intervals differ by 0.008 to 0.009 at each end, so an interval made at 90% fails."""
    labels = np.array([0] * 100 + [1] * 100)
    preds = np.array([0] * 80 + [1] * 20 + [0] * 20 + [1] * 80)
    idx = np.random.default_rng(123).integers(0, 200, size=(40_000, 200))
    y, p = labels[idx], preds[idx]
    tp, tn = ((y == 1) & (p == 1)).sum(1), ((y == 0) & (p == 0)).sum(1)
    fp, fn = ((y == 0) & (p == 1)).sum(1), ((y == 1) & (p == 0)).sum(1)
    f1 = (2 * tp / (2 * tp + fp + fn) + 2 * tn / (2 * tn + fn + fp)) / 2
    reference95, reference90 = np.quantile(f1, [0.025, 0.975]), np.quantile(f1, [0.05, 0.95])
    assert min(abs(reference95 - reference90)) > 0.007
    counts = [80, 20, 20, 80]  # tn, fp, fn, tp
    assert counts_f1_interval(counts, n_resamples=20_000) == pytest.approx(reference95, abs=0.004)
    assert confusion_intervals([[80, 20], [20, 80]])["f1_ci95"] == list(counts_f1_interval(counts))
