import json

import pandas as pd
import pytest

from baseline.tfidf import main
from tests.conftest import ROOT


def test_baseline_learns_synthetic_data(imdb_dir, tmp_path):
    out = tmp_path / "run"
    main(["--config", str(ROOT / "configs/baseline.yaml"), "--data_dir", str(imdb_dir), "--output_dir", str(out),
          "--report_to", "none", "--min_df", "1"])
    results = json.loads((out / "results.json").read_text())
    assert results["test"]["accuracy"] > 0.9
    assert {"accuracy", "f1", "confusion_matrix", "accuracy_negative", "accuracy_positive"} <= set(results["test"])
    assert results["manifest"]["protocol"] == "random_70_10_20"
    assert results["best_C"] in (1.0, 4.0, 16.0, 64.0)
    assert results["num_processes"] == 1  # scikit-learn in one process, under a launcher too
    predictions = pd.read_parquet(out / "predictions.parquet")  # for analysis.compare and the errors list
    assert len(predictions) == results["test"]["n"]
    assert (predictions["prediction"] == predictions["label"]).mean() == pytest.approx(results["test"]["accuracy"])
    assert ((predictions["score"] > 0.5) == (predictions["prediction"] == 1)).all()


@pytest.mark.real_data
@pytest.mark.slow
def test_baseline_on_real_imdb(real_imdb_dir, tmp_path):
    results = main(["--config", str(ROOT / "configs/baseline.yaml"), "--data_dir", str(real_imdb_dir),
                    "--output_dir", str(tmp_path / "run"), "--report_to", "none"])
    assert 0.90 < results["test"]["accuracy"] < 0.94
    assert results["test"]["n"] == 9915
