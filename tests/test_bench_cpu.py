"""tools/bench_cpu: each setting's variants timed in turn, and one reference-over-variant ratio printed per variant."""
import json

import pytest
import torch

from fixtures.synthetic import write_imdb
from tools import bench_cpu as bench


def test_a_thread_count_holds_for_its_step_only():
    seen, before = [], torch.get_num_threads()
    bench.with_threads(1, lambda: seen.append(torch.get_num_threads()))()
    assert seen == [1] and torch.get_num_threads() == before


def test_ratio_is_the_references_seconds_over_the_variants(tmp_path, monkeypatch, capsys):
    fake = {"reference": "slow way", "seconds": {"slow way": 6.0, "fast way": 2.0, "slower way": 12.0}}
    monkeypatch.setattr(bench, "MEASUREMENTS", {"a setting": lambda cfg, splits: fake})
    report = bench.main(["--data_dir", str(write_imdb(tmp_path / "imdb")), "--output", str(tmp_path / "b.json")])
    assert report["measurements"]["a setting"]["speedup"] == {"fast way": 3.0, "slower way": 0.5}
    out = capsys.readouterr().out
    assert "a setting: slow way 6.00 s, fast way 2.00 s -> 3.00x" in out
    assert "a setting: slow way 6.00 s, slower way 12.00 s -> 0.50x" in out
    assert json.loads((tmp_path / "b.json").read_text())["run_info"]["git_commit"]


@pytest.mark.slow
def test_every_measurement_times_each_variant_on_tiny_models(tiny_distilbert, tmp_path, capsys, monkeypatch):
    from tests.tiny_models import CHAT_TEMPLATE, save_tiny_mistral

    # inductor's first compilation takes half a minute even for a tiny model: the call is what counts here
    # (bitsandbytes compiles some of its own functions through torch.compile too: not counted)
    compiled, compile = [], torch.compile
    monkeypatch.setattr(bench.torch, "compile", lambda fn=None, **kw: compiled.append(fn) or fn
                        if isinstance(fn, torch.nn.Module) else compile(fn, **kw))
    lm = save_tiny_mistral(tmp_path / "lm", chat_template=CHAT_TEMPLATE)
    report = bench.main(["--data_dir", str(write_imdb(tmp_path / "imdb")), "--encoder", str(tiny_distilbert),
                         "--causal_lm", str(lm), "--steps", "1"])
    assert list(report["measurements"]) == list(bench.MEASUREMENTS)
    variants = {name: set(m["seconds"]) for name, m in report["measurements"].items()}
    for name, sizes in [("evaluation batch size (MiniLM, 128 reviews)", bench.EVAL_BATCH_SIZES),
                        ("SFT evaluation-loss batch size (SmolLM2 QLoRA, 8 reviews)", bench.SFT_EVAL_BATCH_SIZES),
                        ("label-scoring batch size (SmolLM2 QLoRA, 16 reviews)", bench.SCORING_BATCH_SIZES)]:
        assert variants[name] == {f"batch {b}" for b in sizes}
    assert variants["torch.compile (MiniLM loop step, 8 x 256 tokens)"] == {"eager", "torch.compile"}
    assert len(compiled) == 1
    assert all(s > 0 for m in report["measurements"].values() for s in m["seconds"].values())
    ratios = [line for line in capsys.readouterr().out.splitlines() if line.endswith("x")]
    assert len(ratios) == sum(len(v) - 1 for v in variants.values())
