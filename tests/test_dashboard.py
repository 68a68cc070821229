"""Trackio (`--report_to trackio`, the `[dashboard]` extra): a run's metrics reach the local store under the names and
values of its metrics.jsonl, and `make dashboard` shows them in a real browser.

The store test needs trackio (skipped otherwise); the browser test, marked `browser`, also needs Debian's chromium and
Playwright's Python package. Each run happens in a subprocess: trackio reads TRACKIO_DIR when it is imported."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT

pytest.importorskip("trackio")

PROJECT = "imdb-finetune"
STORE = """
import json, sys
from trackio.sqlite_storage import SQLiteStorage
project, run = sys.argv[1:3]
print(json.dumps({"runs": SQLiteStorage.get_runs(project), "logs": SQLiteStorage.get_logs(project, run),
                  "config": SQLiteStorage.get_run_config(project, run)}, default=str))
"""


def env_with_store(store) -> dict:
    return {**os.environ, "TRACKIO_DIR": str(store), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


def read_store(store, run: str) -> dict:
    out = subprocess.run([sys.executable, "-c", STORE, PROJECT, run], env=env_with_store(store), cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def loop_argv(model, data, out, tmp):
    return ["-m", "distilbert.train_loop", "--config", str(ROOT / "configs/distilbert_loop.yaml"),
            "--model_name_or_path", str(model), "--data_dir", str(data), "--output_dir", str(out),
            "--cache_dir", str(tmp / "cache"), "--max_steps", "6", "--logging_steps", "2", "--eval_steps", "3",
            "--save_steps", "6", "--max_train_samples", "96", "--max_eval_samples", "32", "--max_test_samples", "32"]


def trainer_argv(model, data, out, tmp):
    return ["-m", "distilbert.train_trainer", "--config", str(ROOT / "configs/distilbert_trainer.yaml"),
            "--model_name_or_path", str(model), "--data_dir", str(data), "--output_dir", str(out),
            "--cache_dir", str(tmp / "cache"), "--max_steps", "6", "--logging_steps", "2", "--eval_strategy", "steps",
            "--eval_steps", "3", "--save_strategy", "steps", "--save_steps", "3", "--use_cpu", "true",
            "--max_train_samples", "96", "--max_eval_samples", "32", "--max_test_samples", "32"]


@pytest.mark.parametrize("make_argv", [loop_argv, trainer_argv], ids=["loop", "trainer"])
def test_a_run_reported_to_trackio_leaves_its_metrics_in_the_store(make_argv, tiny_distilbert, imdb_dir, tmp_path):
    store, out = tmp_path / "trackio", tmp_path / "run"
    subprocess.run([sys.executable, *make_argv(tiny_distilbert, imdb_dir, out, tmp_path), "--report_to", "trackio",
                    "--run_name", "store-check"], env=env_with_store(store), cwd=ROOT, check=True,
                   capture_output=True)
    found = read_store(store, "store-check")
    assert found["runs"] == ["store-check"]
    logged = {}
    for row in found["logs"]:
        for key, value in row.items():
            if key not in ("step", "timestamp"):
                logged[(row["step"], key)] = value
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    expected = {(row["step"], key): value for row in rows for key, value in row.items() if key != "step"}
    assert {"train/loss", "eval/accuracy"} <= {key for _, key in expected}
    for where, value in expected.items():
        assert logged.get(where) == pytest.approx(value), where
    results = json.loads((out / "results.json").read_text())
    last = max(step for step, _ in expected)
    assert logged[(last, "test/accuracy")] == pytest.approx(results["test"]["accuracy"])
    assert found["config"]["model_name_or_path"] == str(tiny_distilbert)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LINE_COLOR = "#ff00ff"  # the first colour of the dashboard's palette: the run's line, told apart from axes and grid


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_make_dashboard_lists_the_run_and_draws_its_loss_curve(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    store, port = tmp_path / "trackio", free_port()
    logger = ("from common.run_folder import RunLogger\n"
              f"log = RunLogger({str(tmp_path / 'run')!r}, {{'learning_rate': 1e-4}}, 'trackio', 'browser-check')\n"
              "for step in range(1, 41):\n"
              "    log.log({'train/loss': 0.7 / step ** 0.5, 'train/learning_rate': 1e-4}, step)\n"
              "log.finish({'test': {'accuracy': 0.9}})\n")
    subprocess.run([sys.executable, "-c", logger], env=env_with_store(store), cwd=ROOT, check=True,
                   capture_output=True)
    server = subprocess.Popen(["make", "--no-print-directory", "dashboard", f"PORT={port}"], cwd=ROOT,
                              env={**env_with_store(store), "TRACKIO_COLOR_PALETTE": LINE_COLOR},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                assert server.poll() is None, f"make dashboard exited: {server.stdout.read()}"
                assert time.time() < deadline, "the dashboard did not answer within 90 s"
                time.sleep(0.5)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            elsewhere = []
            page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
                    else elsewhere.append(r.url))
            # not "networkidle": the dashboard polls its API every second, leaving gaps near the 500 ms that
            # networkidle waits for, so it came some runs and not others
            page.goto(f"{url}?project={PROJECT}", wait_until="load")
            page.get_by_text("browser-check").first.wait_for(timeout=30_000)
            plot = page.locator(".plot-container, .line-plot, [class*=plot]").filter(has_text="loss").first
            canvas = plot.locator("canvas").first
            canvas.wait_for(timeout=30_000)
            box = canvas.bounding_box()
            assert box and box["width"] > 100 and box["height"] > 50
            # the line itself: pixels of the run's colour on the canvas, not only the axes and the metric's name
            # (polled: the page draws after its data arrives, which need not be before the canvas exists)
            count = """c => {
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0;
                for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i + 1] < 80 && d[i + 2] > 200) n++;
                return n; }"""
            deadline = time.time() + 30
            while (drawn := canvas.evaluate(count)) <= 50 and time.time() < deadline:
                time.sleep(0.5)
            assert drawn > 50, f"no line drawn on the train/loss plot ({drawn} pixels of the run's colour)"
            browser.close()
        assert elsewhere == []
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
