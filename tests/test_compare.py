"""analysis.compare: paired comparison of two runs' test predictions (McNemar, intervals), refusing different sets."""
import json

import pandas as pd
import pytest

from analysis.compare import main as compare
from common.config import UserError
from common.predictions import write_predictions


def fake_run(folder, labels, preds, texts=None, *, test_sha="abc", name="predictions.parquet"):
    folder.mkdir(parents=True, exist_ok=True)
    texts = texts or [f"review {i}" for i in range(len(labels))]
    write_predictions(folder / name, texts, labels, preds, [0.5] * len(labels))
    (folder / "results.json").write_text(json.dumps({"manifest": {"splits": {"test": {"sha256": test_sha}}}}))
    return folder


def test_two_runs_compared_example_by_example(tmp_path, capsys):
    labels = [0, 1] * 50
    a = list(labels)                      # A: all 100 right
    b = list(labels)
    for i in range(10):                   # B: 10 wrong where A is right
        b[i] = 1 - b[i]
    b_ok_a_wrong = [10]                   # and one right where A is wrong
    a[10] = 1 - a[10]
    result = compare(["--runs", f"{fake_run(tmp_path / 'a', labels, a)},{fake_run(tmp_path / 'b', labels, b)}",
                      "--out", str(tmp_path / "comparison.json")])
    assert json.loads((tmp_path / "comparison.json").read_text()) == result  # what it printed, to commit
    assert (result["a_only_correct"], result["b_only_correct"]) == (10, len(b_ok_a_wrong))
    assert result["p_value"] == pytest.approx(2 * 12 / 2**11)  # exact: 2 * P(X <= 1), X ~ Bin(11, 1/2)
    assert result["difference"] == pytest.approx(0.99 - 0.90)
    low, high = result["difference_ci95"]
    assert low < 0.09 < high and low > 0  # all discordant pairs but one favour A
    assert "a real difference at the 5% level" in capsys.readouterr().out


def test_a_mistral_run_compares_zero_shot_with_tuned(tmp_path):
    labels = [0, 1] * 20
    run = fake_run(tmp_path / "sft", labels, [1] * 40, name="predictions_zero_shot.parquet")
    write_predictions(run / "predictions_tuned.parquet", [f"review {i}" for i in range(40)], labels, labels)
    result = compare(["--runs", str(run)])
    assert result["accuracy_a"] == 0.5 and result["accuracy_b"] == 1.0
    assert result["b_only_correct"] == 20 and result["p_value"] < 1e-5


@pytest.mark.parametrize("change, match", [
    (dict(test_sha="other"), "manifests name different test sets"),
    (dict(texts=[f"other {i}" for i in range(10)]), "scored different test sets"),
])
def test_refuses_different_test_sets(tmp_path, change, match):
    labels = [0, 1] * 5
    a = fake_run(tmp_path / "a", labels, labels)
    b = fake_run(tmp_path / "b", labels, labels, **change)
    with pytest.raises(UserError, match=match):
        compare(["--runs", f"{a},{b}"])


def test_a_run_without_predictions_is_named(tmp_path):
    (tmp_path / "old").mkdir()
    with pytest.raises(UserError, match="old: no predictions.parquet"):
        compare(["--runs", f"{tmp_path / 'old'},{tmp_path / 'old'}"])


def test_unparsed_answers_count_as_wrong(tmp_path):
    labels = [0, 1, 0, 1]
    a = fake_run(tmp_path / "a", labels, [0, 1, None, None])
    b = fake_run(tmp_path / "b", labels, labels)
    assert compare(["--runs", f"{a},{b}"])["accuracy_a"] == 0.5
    assert pd.read_parquet(a / "predictions.parquet")["prediction"].isna().sum() == 2


def test_two_mistral_runs_pair_the_evaluation_asked_for(tmp_path):
    """Two SFT runs hold two evaluations each: --evaluation picks which to pair (bf16 against fp32, say)."""
    labels = [0, 1] * 20
    runs = []
    for name, zero_shot, tuned in (("bf16", [1] * 40, list(labels)), ("fp32", [1] * 40, [1 - y for y in labels])):
        run = fake_run(tmp_path / name, labels, zero_shot, name="predictions_zero_shot.parquet")
        runs.append(fake_run(run, labels, tuned, name="predictions_tuned.parquet"))
    pair = f"{runs[0]},{runs[1]}"
    with pytest.raises(UserError, match="--evaluation zero-shot or tuned"):
        compare(["--runs", pair])
    tuned = compare(["--runs", pair, "--evaluation", "tuned"])
    assert tuned["a"].endswith("(tuned)") and (tuned["accuracy_a"], tuned["accuracy_b"]) == (1.0, 0.0)
    zero_shot = compare(["--runs", pair, "--evaluation", "zero-shot"])
    assert zero_shot["difference"] == 0 and zero_shot["p_value"] == 1.0
