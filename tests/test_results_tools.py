import json
import shutil

import pandas as pd
import pytest

from common.config import UserError

from analysis.plots import PANELS, plot_run
from analysis.report import build_report
from tests.conftest import MAKE, ROOT


def write_run(folder, rows, results):
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "results.json").write_text(json.dumps(results))
    return folder


def metrics_rows(n=10, with_eval=True):
    rows = [{"step": s, "train/loss": 1 / s, "train/learning_rate": 1e-4 * (1 - s / n), "train/grad_norm": 0.5,
             "train/epoch": s / n, "train/global_step": s} for s in range(1, n + 1)]
    if with_eval:
        rows += [{"step": n, "eval/loss": 0.3, "eval/accuracy": 0.9}]
    return rows


def results_of(script="distilbert.train_loop", accuracy=0.93, params=66_955_010, date="2026-11-30T10:00:00+00:00"):
    metrics = {"accuracy": accuracy, "f1": accuracy, "accuracy_negative": 0.9, "accuracy_positive": 0.96,
               "confusion_matrix": [[45, 5], [2, 48]], "n": 100}
    return {"script": script, "model": "distilbert-base-uncased", "model_parameters": params, "test": metrics,
            "manifest": {"protocol": "random_70_10_20", "splits": {"train": {"size": 700}, "validation": {"size": 100},
                                                                   "test": {"size": 100}}},
            "wall_time_s": 120.0, "train_samples_per_second": 300.0,
            "run_info": {"date": date, "git_commit": "0123456789abcdef"}}


def test_plots_complete_run(tmp_path, capsys):
    run = write_run(tmp_path / "run", metrics_rows(), results_of())
    written = plot_run(run, to=tmp_path / "images")
    assert {p.name for p in written} == {"training.png", "confusion_matrix.png"}
    for path in written + [tmp_path / "images" / "training.png"]:
        assert path.stat().st_size > 5_000 and path.read_bytes()[:4] == b"\x89PNG"
    assert "no data" not in capsys.readouterr().out


def test_plots_single_point_and_missing_metrics(tmp_path, capsys):
    rows = [{"step": 1, "train/loss": 0.7}]
    run = write_run(tmp_path / "run", rows, {"script": "x"})
    written = plot_run(run)
    assert [p.name for p in written] == ["training.png"]
    out = capsys.readouterr().out
    assert "no data for train/learning_rate" in out and "eval/accuracy" in out
    assert "no confusion matrix" in out


def drawn(monkeypatch) -> dict:
    """What each figure plot_run saves shows: its file name -> the titles of its panels that drew something."""
    from analysis import plots

    shown, save = {}, plots.save

    def record(fig, title, path):
        shown[path.name] = [ax.get_title() for ax in fig.axes if ax.images or ax.lines or ax.patches]
        save(fig, title, path)
    monkeypatch.setattr(plots, "save", record)
    return shown


def test_plots_mistral_run_shows_both_evaluations(tmp_path, monkeypatch):
    results = results_of("mistral.train_sft")
    results["zero_shot"] = {**results.pop("test"), "confusion_matrix": [[10, 40], [0, 50]]}
    results["tuned"] = {**results_of()["test"], "confusion_matrix": [[46, 4], [0, 50]]}
    run = write_run(tmp_path / "run", metrics_rows(with_eval=False), results)
    shown = drawn(monkeypatch)
    assert len(plot_run(run)) == 2
    # one panel per evaluation, each drawn from its own matrix: 60 of 100 right untuned, 96 tuned
    assert shown["confusion_matrix.png"] == ["zero-shot: accuracy 60.00% (n=100)", "tuned: accuracy 96.00% (n=100)"]


def test_report_rows_published_figures_and_smoke_runs(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "loop", metrics_rows(), results_of())
    write_run(runs / "tiny", metrics_rows(), results_of(params=1_000))
    demo = runs / "demo"
    write_run(demo / "trainer", metrics_rows(), results_of("distilbert.train_trainer"))
    (demo / "SMOKE").write_text("demo")
    text = build_report(runs)
    measured, smoke = text.split("## Smoke runs")
    assert "93.82%" in measured and "96.40%" in measured and "63.00%" in measured  # published, labelled
    assert "`" + str(runs / "loop") + "`" in measured and "700 / 100 / 100" in measured
    assert "93.00%" in measured and "0123456" in measured and "2026-11-30" in measured
    assert str(runs / "tiny") in smoke and str(runs / "demo" / "trainer") in smoke
    assert str(runs / "tiny") not in measured


def test_report_missing_folder(tmp_path):
    from common.config import UserError

    with pytest.raises(UserError, match="runs folder not found"):
        build_report(tmp_path / "nope")


def test_every_panel_is_drawn_from_what_the_loop_logs(tiny_distilbert, imdb_dir, tmp_path):
    """A panel whose metric no script writes would stay empty on every run: the loop's own log fills them all."""
    from analysis.plots import training_figure
    from common.run_folder import read_metrics
    from distilbert.train_loop import main as train_loop
    from tests.test_distilbert_loop import args

    out = tmp_path / "run"
    train_loop(args(tiny_distilbert, imdb_dir, out, tmp_path, "--max_steps", "4", "--logging_steps", "1",
                    "--eval_steps", "2"))
    assert training_figure(read_metrics(out / "metrics.jsonl"), "loop", tmp_path / "training.png") == []
    assert (tmp_path / "training.png").is_file() and len(PANELS) == 7


@pytest.mark.slow
def test_demo_runs_every_pipeline(tmp_path, capsys):
    from tools.demo import main as demo

    out = demo(["--out", str(tmp_path / "demo"), "--synthetic", "true", "--n_train", "64"])
    for run in ("baseline", "distilbert_loop", "distilbert_trainer", "mistral_sft"):
        assert (out / run / "results.json").is_file(), run
        assert (out / run / "plots" / "confusion_matrix.png").is_file(), run
    assert (out / "distilbert_loop" / "plots" / "training.png").is_file()
    report = (out / "RESULTS.md").read_text()
    assert "## Smoke runs" in report and report.split("## Smoke runs")[0].count("distilbert.train_loop") == 0
    printed = capsys.readouterr().out
    assert "meaningless" in printed and "OK" in printed


def test_report_shows_the_intervals_a_run_recorded(tmp_path):
    from common.metrics import classification_metrics

    metrics = classification_metrics([0, 1] * 500, [0, 1] * 450 + [1, 0] * 50)  # 900 of 1000 right
    results = {**results_of(), "test": metrics}
    write_run(tmp_path / "runs" / "a", metrics_rows(), results)
    lo, hi = metrics["accuracy_ci95"]
    assert round(lo, 4) == 0.8798 and round(hi, 4) == 0.9171  # Wilson, 900 / 1000, by hand
    report = build_report(tmp_path / "runs")
    assert f"90.00% ({100 * lo:.2f}–{100 * hi:.2f}%)" in report


def test_report_gives_a_resumed_run_its_whole_wall_time(tmp_path):
    results = {**results_of(), "earlier_segments": {"to_step": 20, "wall_time_s": 300.0, "peak_rss_mib": 900.0}}
    write_run(tmp_path / "runs" / "a", metrics_rows(), results)
    write_run(tmp_path / "runs" / "b", metrics_rows(), results_of())
    report = build_report(tmp_path / "runs")
    # 300 s before the cut and 120 s after; the throughput is the resumed process's alone
    assert "| 420 s, resumed at step 20 | 300.0 (steps 21–) |" in report
    assert "| 120 s | 300.0 |" in report


def predictions_run(folder, words, labels, preds, scores, *, name="predictions.parquet",
                    script="distilbert.train_loop"):
    """A run folder with results.json and predictions whose reviews have the given lengths in words."""
    from common.predictions import write_predictions

    if not (folder / "results.json").exists():
        write_run(folder, metrics_rows(), results_of(script))
    texts = [f"review{i}\n\na|b " + "w " * (n - 2) for i, n in enumerate(words)]  # cleaned text: line breaks
    write_predictions(folder / name, texts, labels, preds, scores)
    return folder


def test_accuracy_by_length_quintiles(tmp_path, capsys):
    from analysis.plots import accuracy_by_length

    words = list(range(10, 510))                     # 500 reviews, 100 per quintile
    labels = [i % 2 for i in range(500)]
    preds = [y if n < 410 else 1 - y for y, n in zip(labels, words)]  # the longest fifth all wrong
    run = predictions_run(tmp_path / "run", words, labels, preds, [0.9] * 500)
    table = accuracy_by_length(pd.read_parquet(run / "predictions.parquet"))
    assert table["words"].tolist() == ["10-109", "110-209", "210-309", "310-409", "410-509"]
    assert table["n"].tolist() == [100] * 5 and table["accuracy"].tolist() == [1, 1, 1, 1, 0]
    assert table["low"][0] == pytest.approx(0.963, abs=1e-3) and table["high"][4] == pytest.approx(0.037, abs=1e-3)
    written = plot_run(run)
    assert (run / "plots" / "accuracy_by_length.png") in written
    assert "410-509" in capsys.readouterr().out  # the table is printed too


def test_length_figure_for_zero_shot_and_tuned_and_a_note_for_old_predictions(tmp_path, capsys):
    words, labels = list(range(20, 120)), [0, 1] * 50
    run = predictions_run(tmp_path / "sft", words, labels, [1] * 100, [0.5] * 100, name="predictions_zero_shot.parquet",
                          script="mistral.train_sft")
    predictions_run(run, words, labels, labels, [2.0] * 100, name="predictions_tuned.parquet")
    from analysis.plots import length_tables

    tables = length_tables(run)
    assert list(tables) == ["zero-shot", "tuned"] and tables["tuned"]["accuracy"].tolist() == [1.0] * 5
    old = run / "predictions_tuned.parquet"
    pd.read_parquet(old).drop(columns=["words", "text_start"]).to_parquet(old)
    assert length_tables(run) == {} and "no review lengths" in capsys.readouterr().out


def test_report_lists_the_most_confident_errors(tmp_path):
    from analysis.report import main as report

    runs = tmp_path / "runs"
    #            right  wrong 0.99  wrong 0.6  wrong 0.02  right
    predictions_run(runs / "loop", [10] * 5, [1, 0, 0, 1, 0], [1, 1, 1, 0, 0], [0.999, 0.99, 0.6, 0.02, 0.01])
    sft = predictions_run(runs / "sft", [10] * 3, [0, 1, 0], [1, 0, 1], [3.0, -8.0, 0.5],
                          name="predictions_zero_shot.parquet", script="mistral.train_sft")
    predictions_run(sft, [10] * 3, [0, 1, 0], [0, 1, 0], [-1.0, 1.0, -1.0], name="predictions_tuned.parquet")
    out = report(["--runs", str(runs), "--out", str(tmp_path / "results" / "RESULTS.md"), "--errors", "2"])
    errors = (out.parent / "ERRORS.md").read_text()
    assert "`ERRORS.md` beside this file" in out.read_text()
    loop = errors.split("## `")[1]
    assert [line.split(" | ")[0] for line in loop.splitlines() if line.startswith("| ") and "---" not in line][1:] \
        == ["| 1", "| 3"]  # 0.99 and 0.02 (the surest), not 0.6, never a right answer
    assert "| negative | positive | 0.990 | review1 a\\|b w w" in loop  # line breaks and | made safe for the table
    zero_shot, tuned = errors.split("## `")[2:]
    assert zero_shot.index("| 1 | positive | negative | -8.000") < zero_shot.index("| 0 | negative | positive | 3.000")
    assert "No scored errors" in tuned


def test_mutation_report_writes_the_share_killed_and_the_survivors(tmp_path, monkeypatch):
    from tools import mutation_report

    (tmp_path / "mutants").mkdir()
    (tmp_path / "mutants" / "mutmut-cicd-stats.json").write_text(json.dumps(
        {"killed": 80, "survived": 2, "total": 100, "no_tests": 0, "skipped": 10, "suspicious": 0, "timeout": 8}))
    monkeypatch.setattr(mutation_report, "survivors", lambda folder: ["a.x_f__mutmut_1", "a.x_g__mutmut_3"])
    out = tmp_path / "results.json"
    results = mutation_report.main(["--mutants", str(tmp_path / "mutants"), "--out", str(out)])
    assert results["score"] == 88 / 90  # timeouts count as killed; skipped mutants are not counted
    saved = json.loads(out.read_text())
    assert (saved["mutants"], saved["survived"], saved["survivors"]) == (90, 2, ["a.x_f__mutmut_1", "a.x_g__mutmut_3"])
    monkeypatch.setattr(mutation_report, "survivors", lambda folder: ["a.x_f__mutmut_1"])
    with pytest.raises(UserError, match="lists 1 survivors, its stats 2"):
        mutation_report.main(["--mutants", str(tmp_path / "mutants"), "--out", str(out)])


def test_report_writes_into_the_runs_folder_and_leaves_the_committed_table_alone(tmp_path):
    """`make report` tabulates runs/ into runs/RESULTS.md; only RUNS=results rewrites results/RESULTS.md."""
    import subprocess

    from analysis.report import main as report

    runs = tmp_path / "runs"
    (runs / "a").mkdir(parents=True)
    (runs / "a" / "results.json").write_text(json.dumps({"script": "baseline.tfidf", "test": {"accuracy": 0.9}}))
    assert report(["--runs", str(runs), "--errors", "0"]) == runs / "RESULTS.md"
    assert sorted(p.name for p in runs.iterdir()) == ["RESULTS.md", "a"]
    recipe = subprocess.run([*MAKE, "-n", "report"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "--runs runs" in recipe and "results/" not in recipe
    recipe = subprocess.run([*MAKE, "-n", "report", "RUNS=results"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "--runs results" in recipe and "--out" not in recipe


def test_every_reader_takes_a_generate_runs_accuracy_over_all_reviews_not_the_parsed_ones(tmp_path, monkeypatch):
    """A generate-mode run where 7 of 10 answers parsed, 5 of them right: its accuracy is 5/10 (an unparsed answer is
    wrong), where the parsed answers alone score 5/7. The report, the comparison, the plots and the seed summary
    must all say 50.00%."""
    from analysis import compare, report, seeds
    from common.predictions import write_predictions
    from mistral.evaluate import generate_metrics

    labels = [0, 1] * 5
    answers = [0, 1, None, None, 0, 1, 1, 0, None, 1]
    metrics = generate_metrics(labels, answers)
    assert (metrics["accuracy"], metrics["parsed"]["accuracy"]) == (0.5, 5 / 7)  # the two differ
    results = {**results_of("mistral.evaluate"), "split": "test", "test": {**metrics, "mode": "generate"}}
    results["manifest"]["splits"]["test"]["sha256"] = "same test set"
    run = write_run(tmp_path / "sweep" / "seed_1", metrics_rows(with_eval=False), results)
    write_predictions(run / "predictions.parquet", [f"review {'word ' * i}" for i in range(10)], labels, answers)
    (run / "config.yaml").write_text("seed: 1\n")
    other = tmp_path / "sweep" / "seed_2"
    shutil.copytree(run, other)
    (other / "config.yaml").write_text("seed: 2\n")

    assert report.rows_of(run, results)[0][5].startswith("50.00%")
    assert compare.main(["--runs", f"{run},{other}"])["accuracy_a"] == 0.5
    shown = drawn(monkeypatch)
    plot_run(run)
    assert shown["confusion_matrix.png"] == ["test: accuracy 50.00% (n=10)"]
    summary = seeds.summarize(tmp_path / "sweep")["evaluations"]
    assert [f["accuracy"]["values"] for f in summary.values()] == [[0.5, 0.5]]
