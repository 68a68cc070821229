"""The benchmarks end to end: what they measure is checked (tokens per review under each batching), the speeds they
print are not (they depend on the machine)."""
import pytest

from distilbert.bench import main as bench


@pytest.mark.slow
def test_batching_benchmark_runs(imdb_dir, capsys):
    report = bench(["--data_dir", str(imdb_dir), "--n_samples", "64", "--size", "small"])
    assert set(report["samples_per_second"]) == {"length_grouped", "pad_to_max_length", "random"}
    # what the speed comes from, exactly: tokens fed per review, padding included, in each batching
    padded = report["padded_tokens_per_review"]
    assert padded["pad_to_max_length"] == 512
    assert report["mean_tokens"] <= padded["length_grouped"] < padded["random"] < 512
    assert padded["length_grouped"] < 1.15 * report["mean_tokens"]  # groups of similar lengths pad little
    assert "length_grouped / pad_to_max_length" in capsys.readouterr().out


@pytest.mark.slow
def test_loop_against_trainer_comparison_runs(imdb_dir):
    report = bench(["--data_dir", str(imdb_dir), "--n_samples", "64", "--n_test", "32", "--compare", "true"])
    # what makes the ratio a fair one: the same optimizer steps on the same reviews, scored on the same test reviews
    # (the ratio itself is a division of machine-dependent speeds, not checked here)
    assert report["loop"]["global_step"] == report["trainer"]["global_step"] == 4
    assert round(report["loop"]["test_accuracy"] * 32, 6).is_integer()
    assert round(report["trainer"]["test_accuracy"] * 32, 6).is_integer()
