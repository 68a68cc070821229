"""tools/bench_precision: fp32 and bf16 steps timed in turn on one clock, and the ratio it prints per model."""
import json

import pytest

from fixtures.synthetic import write_imdb
from tools import bench_precision as bench


def test_steps_run_in_turn_after_one_warm_up_each_and_medians_are_kept(monkeypatch):
    """A fake clock: each fp32 step takes 3, 5, 4 units after its warm-up, each bf16 step 1, 2, 9."""
    clock, calls = [0.0], []
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    durations = {"fp32": iter([100, 3, 5, 4]), "bf16": iter([100, 1, 2, 9])}

    def step(name):
        def run():
            calls.append(name)
            clock[0] += next(durations[name])
        return run
    seconds = bench.side_by_side({"fp32": step("fp32"), "bf16": step("bf16")}, n=3)
    assert calls == ["fp32", "bf16"] * 4
    assert seconds == {"fp32": 4, "bf16": 2}  # the warm-ups' 100 count for nothing


@pytest.mark.slow
def test_bench_prints_one_ratio_per_measurement_and_writes_them(tiny_distilbert, tmp_path, capsys):
    from tests.tiny_models import CHAT_TEMPLATE, save_tiny_mistral

    lm = save_tiny_mistral(tmp_path / "lm", chat_template=CHAT_TEMPLATE)
    report = bench.main(["--data_dir", str(write_imdb(tmp_path / "imdb")), "--encoder", str(tiny_distilbert),
                         "--causal_lm", str(lm), "--steps", "1", "--output", str(tmp_path / "bench.json")])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.endswith("x")]
    assert len(lines) == len(bench.MEASUREMENTS) == len(report["measurements"])
    saved = json.loads((tmp_path / "bench.json").read_text())
    for line, (name, m) in zip(lines, saved["measurements"].items()):
        assert line.startswith(name) and line.endswith(f"-> {m['fp32_s'] / m['bf16_s']:.2f}x")
    assert saved["run_info"]["git_commit"] and saved["native_bf16"] in (True, False)
