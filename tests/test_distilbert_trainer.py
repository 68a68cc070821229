import json

import pytest

import distilbert.train_trainer as tt
from common.config import ConfigError, UserError, parse
from distilbert.data import DataArguments
from distilbert.model import EncoderArguments
from tests.conftest import ROOT, run_on_synthetic

CONFIG = str(ROOT / "configs/distilbert_trainer.yaml")


def args(model, data, out, tmp_path, *extra):
    return ["--config", CONFIG, "--model_name_or_path", str(model), "--data_dir", str(data), "--output_dir", str(out),
            "--cache_dir", str(tmp_path / "cache"), "--report_to", "none", "--warmup_steps", "5",
            "--learning_rate", "1e-3", "--logging_steps", "4", "--use_cpu", "true", *extra]


@pytest.fixture(scope="module")
def trainer_run(tiny_distilbert, tmp_path_factory):
    return run_on_synthetic(tmp_path_factory, "trainer", tt.main, args, tiny_distilbert, "--num_train_epochs", "3")


def test_trainer_learns_and_writes_same_files_as_loop(trainer_run):
    out, results = trainer_run
    assert results["test"]["accuracy"] > 0.9
    saved = json.loads((out / "results.json").read_text())
    loop_keys = {"script", "model", "model_parameters", "test", "validation", "best_step", "global_step", "manifest",
                 "split_sizes_used",
                 "num_processes", "precision", "precision_reason", "train_samples_per_second", "train_runtime",
                 "train_step_samples_per_second", "wall_time_s", "run_info"}
    assert set(saved) == loop_keys
    assert set(saved["test"]) == {"loss", "accuracy", "precision", "recall", "f1", "accuracy_negative",
                                  "accuracy_positive", "confusion_matrix", "n", "accuracy_ci95", "f1_ci95"}
    low, high = saved["test"]["accuracy_ci95"]
    assert low < saved["test"]["accuracy"] < high or saved["test"]["accuracy"] == 1.0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "train/loss" in r]
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "train/epoch", "train/global_step",
            "train/samples_per_second"} <= set(train_rows[0])
    assert train_rows[-1]["train/loss"] < train_rows[0]["train/loss"]
    eval_rows = [r for r in rows if "eval/accuracy" in r]
    assert len(eval_rows) == 3 and {"eval/loss", "eval/f1"} <= set(eval_rows[0])


def test_best_checkpoint_is_chosen_by_validation_accuracy(trainer_run):
    out, results = trainer_run
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/accuracy" in r]
    best = max(evals, key=lambda r: r["eval/accuracy"])  # first of the best, as the Trainer keeps it
    assert results["best_step"] == best["step"]
    assert results["validation"]["accuracy"] == pytest.approx(best["eval/accuracy"])
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(out / "best_model").config.id2label[0] == "negative"


def test_yaml_and_command_line_reach_training_arguments():
    model, data, training = parse([EncoderArguments, DataArguments, tt.TrainingArguments],
                                  ["--config", CONFIG, "--learning_rate", "3e-5", "--max_train_samples", "10",
                                   "--report_to", "none", "--use_cpu", "true"])
    assert training.learning_rate == pytest.approx(3e-5)
    assert training.weight_decay == pytest.approx(0.01) and training.warmup_steps == 500
    assert training.train_sampling_strategy == "group_by_length"
    assert training.metric_for_best_model == "accuracy" and training.load_best_model_at_end
    assert data.max_train_samples == 10 and model.model_name_or_path == "distilbert-base-uncased"


@pytest.mark.parametrize("argv, match", [
    (["--learning_rat", "1"], r"unknown key learning_rat in command line; did you mean learning_rate\?"),
    (["--eval_strategy", "sometimes"], "eval_strategy"),
])
def test_bad_settings(argv, match):
    with pytest.raises(ConfigError, match=match):
        parse([EncoderArguments, DataArguments, tt.TrainingArguments], ["--config", CONFIG, *argv])


def test_resume_from_latest_checkpoint(tiny_distilbert, imdb_dir, tmp_path):
    out = tmp_path / "run"
    common = ["--max_train_samples", "128", "--save_total_limit", "3"]
    first = tt.main(args(tiny_distilbert, imdb_dir, out, tmp_path, *common, "--num_train_epochs", "1"))
    assert first["global_step"] == 8
    resumed = tt.main(args(tiny_distilbert, imdb_dir, out, tmp_path, *common, "--num_train_epochs", "2",
                           "--resume_from_checkpoint", "latest"))
    assert resumed["global_step"] == 16
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
             if "train/loss" in line]
    assert steps == sorted(set(steps)) and steps[-1] == 16


def test_resume_without_checkpoint_is_an_error(tiny_distilbert, imdb_dir, tmp_path):
    with pytest.raises(UserError, match="no checkpoint to resume"):
        tt.main(args(tiny_distilbert, imdb_dir, tmp_path / "empty", tmp_path, "--resume_from_checkpoint", "latest"))


@pytest.mark.slow
def test_trainer_logs_to_wandb_offline(tiny_distilbert, imdb_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    argv = args(tiny_distilbert, imdb_dir, out, tmp_path, "--max_train_samples", "64", "--num_train_epochs", "1")
    argv[argv.index("--report_to") + 1] = "wandb"
    results = tt.main(argv)
    assert results["test"]["n"] > 0
    assert list(out.rglob("offline-run-*")), "no W&B offline run under the run folder"


def test_cache_dir_none_means_no_cache_and_a_too_long_max_length_is_clamped(tiny_distilbert, imdb_dir, tmp_path,
                                                                            monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    tt.main(args(tiny_distilbert, imdb_dir, out, tmp_path, "--cache_dir", "none", "--max_steps", "2",
                 "--max_length", "100000", "--eval_strategy", "no", "--save_strategy", "no",
                 "--load_best_model_at_end", "false"))
    assert not (tmp_path / "none").exists()
    config = (out / "config.yaml").read_text()
    assert "cache_dir: null" in config and "max_length: 512" in config  # the tiny model's 512 positions
    assert "max_length 100000 is more than the model takes: using its limit, 512 tokens" in capsys.readouterr().out


@pytest.mark.slow
def test_loop_and_trainer_give_the_same_metrics_within_noise(trainer_run, tiny_distilbert, tmp_path_factory):
    """Same seed, data, recipe and steps. Not bitwise the same (each has its own batch order and dropout stream),
    so: the same test examples, and test accuracy within 3 points (a class flip of 3% of 400 reviews)."""
    import distilbert.train_loop as loop
    from tests.test_distilbert_loop import args as loop_args

    out, trainer = trainer_run
    loop_out, looped = run_on_synthetic(tmp_path_factory, "loop_vs_trainer", loop.main, loop_args, tiny_distilbert,
                                 "--num_train_epochs", "3")
    assert looped["manifest"]["splits"] == trainer["manifest"]["splits"]
    assert looped["global_step"] == trainer["global_step"]
    assert abs(looped["test"]["accuracy"] - trainer["test"]["accuracy"]) <= 0.03
    # both wrote their test predictions; the paired comparison reads them and finds the accuracies reported
    from analysis.compare import main as compare

    paired = compare(["--runs", f"{loop_out},{out}"])
    assert paired["accuracy_a"] == looped["test"]["accuracy"] and paired["accuracy_b"] == trainer["test"]["accuracy"]
    assert paired["n"] == trainer["test"]["n"]
    assert min(looped["test"]["accuracy"], trainer["test"]["accuracy"]) > 0.9
