"""tools/bench_allocator: the loop run once per allocator, each preloaded into its own process, and glibc's median
step time over each allocator's printed as one ratio."""
import ctypes.util
import json

import pytest

from fixtures.synthetic import write_imdb
from tools import bench_allocator as bench


def test_ratio_is_glibcs_median_step_over_the_allocators(tmp_path, monkeypatch, capsys):
    fake = {"found": {"glibc": {"median_step_s": 3.0, "peak_rss_mib": 900.0, "rss_growth_in_training_mib": 500.0},
                      "jemalloc": {"median_step_s": 2.0, "peak_rss_mib": 600.0, "rss_growth_in_training_mib": 100.0}},
            "missing": ["tcmalloc"]}
    monkeypatch.setattr(bench, "measure", lambda cfg: fake)
    report = bench.main(["--data_dir", str(write_imdb(tmp_path / "imdb")), "--output", str(tmp_path / "a.json")])
    assert report["speedup"] == {"jemalloc": 1.5}
    out = capsys.readouterr().out
    assert "jemalloc  2.00 s/step, peak RSS 600 MiB (+100 MiB in training)  -> 1.50x" in out
    assert "tcmalloc  not installed (apt-get install libtcmalloc-minimal4): left out" in out
    assert json.loads((tmp_path / "a.json").read_text())["run_info"]["git_commit"]


@pytest.mark.slow
def test_each_allocator_runs_the_loop_in_its_own_process(tiny_distilbert, tmp_path):
    report = bench.main(["--data_dir", str(write_imdb(tmp_path / "imdb")), "--encoder", str(tiny_distilbert),
                         "--steps", "2"])
    installed = [n for n, lib in bench.ALLOCATORS.items() if lib is None or ctypes.util.find_library(lib)]
    assert list(report["allocators"]) == installed
    for name, run in report["allocators"].items():
        assert run["malloc"] == name  # the run's own process says which allocator it ran on
        assert len(run["step_s"]) == 3  # a warm-up step, then --steps timed ones
        assert run["peak_rss_mib"] > 0
    assert set(report["speedup"]) == set(installed) - {"glibc"}
