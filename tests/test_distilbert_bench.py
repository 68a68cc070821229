"""The benchmarks run end to end (their speed figures are printed by `make bench-distilbert`, never asserted)."""
import pytest

from distilbert.bench import main as bench


@pytest.mark.slow
def test_batching_benchmark_runs(imdb_dir, capsys):
    report = bench(["--data_dir", str(imdb_dir), "--n_samples", "64", "--size", "small"])
    assert set(report["samples_per_second"]) == {"length_grouped", "pad_to_max_length", "random"}
    assert all(rate > 0 for rate in report["samples_per_second"].values())
    assert report["mean_tokens"] > 5
    assert "length_grouped / pad_to_max_length" in capsys.readouterr().out


@pytest.mark.slow
def test_loop_against_trainer_comparison_runs(imdb_dir):
    report = bench(["--data_dir", str(imdb_dir), "--n_samples", "64", "--n_test", "32", "--compare", "true"])
    assert report["loop"]["global_step"] == report["trainer"]["global_step"] == 4
    assert report["loop_vs_trainer"] > 0
