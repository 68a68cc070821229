"""The DistilBERT benchmarks end to end: what they measure is checked (tokens per review under each batching, the
same steps and test reviews for the loop and the Trainer), and the ratios they report are checked against speeds
worked by hand in place of the runs' (real speeds depend on the machine)."""
import pytest

from distilbert import bench
from distilbert.bench import main

RATES = {"length_grouped": 30.0, "random": 20.0, "pad_to_max_length": 10.0}


@pytest.mark.slow
def test_batching_benchmark_reports_tokens_per_review_and_the_ratios_of_its_runs(imdb_dir, monkeypatch, capsys):
    real = bench.run_mode

    def run_mode(cfg, model, tmp, batching, max_steps=None):
        ran = real(cfg, model, tmp, batching, max_steps)  # the runs themselves: they fill the cache the report reads
        return ran if max_steps else {**ran, "train_step_samples_per_second": RATES[batching]}
    monkeypatch.setattr(bench, "run_mode", run_mode)
    report = main(["--data_dir", str(imdb_dir), "--n_samples", "64", "--size", "small"])
    assert report["samples_per_second"] == RATES
    assert (report["speedup_vs_pad_to_max_length"], report["speedup_random_vs_pad_to_max_length"]) == (3.0, 2.0)
    hours = report["projected_3_epoch_hours"]
    assert hours["pad_to_max_length"] == pytest.approx(3 * hours["length_grouped"])
    # what the speed comes from, exactly: tokens fed per review, padding included, in each batching
    padded = report["padded_tokens_per_review"]
    assert padded["pad_to_max_length"] == 512
    assert report["mean_tokens"] <= padded["length_grouped"] < padded["random"] < 512
    assert padded["length_grouped"] < 1.15 * report["mean_tokens"]  # groups of similar lengths pad little
    assert "length_grouped / pad_to_max_length = 3.00x" in capsys.readouterr().out


@pytest.mark.slow
def test_loop_against_trainer_runs_the_same_steps_and_reports_their_ratio(imdb_dir, monkeypatch):
    import distilbert.train_loop
    import distilbert.train_trainer

    runs = {}
    for name, module, speed in (("loop", distilbert.train_loop, 12.0), ("trainer", distilbert.train_trainer, 10.0)):
        def timed(argv, real=module.main, name=name, speed=speed):
            runs[name] = real(argv)
            return {**runs[name], "train_step_samples_per_second": speed}
        monkeypatch.setattr(module, "main", timed)
    report = main(["--data_dir", str(imdb_dir), "--n_samples", "64", "--n_test", "32", "--compare", "true"])
    assert report["loop_vs_trainer"] == pytest.approx(1.2)
    # a fair ratio: the same optimizer steps on the same reviews, scored on the same test reviews
    assert report["loop"]["global_step"] == report["trainer"]["global_step"] == 4
    assert runs["loop"]["test"]["n"] == runs["trainer"]["test"]["n"] == 32
    test_sets = {name: run["manifest"]["splits"]["test"]["sha256"] for name, run in runs.items()}
    assert test_sets["loop"] == test_sets["trainer"]
