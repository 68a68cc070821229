"""The README and docs/ say only what the repo's committed results say: every percentage in them is a figure of a
results.json under results/, a published figure labelled as such, or one of a few settings named below; and every
relative link resolves."""
import json
import re

import pytest

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PUBLISHED = {"93.82%", "93.56%", "96.4%", "63%"}  # the original work's figures, quoted
SETTINGS = {  # percentages that are settings or definitions, not measurements
    "95%": "the confidence level of every interval",
    "10%": "the official protocol's validation share; the loop-vs-Trainer speed bound",
    "20%": "the test share of random_70_10_20",
    "80%": "the accuracy bar of the slow real-model tests",
    "3%": "Mistral's warm-up ratio (warmup_ratio 0.03)",
    "85%": "the mutation-testing goal (share of mutants killed)",
}
PERCENT = re.compile(r"(\d+(?:\.\d+)?)(?:–(\d+(?:\.\d+)?))?%")


def committed_figures() -> set[str]:
    """Every proportion in the committed results, as a percentage with one or two decimals: accuracies, per-class
    accuracies and their intervals, shares (of probability mass, say), and each split's share of positive reviews
    (from its manifest)."""
    figures = set()

    def add(value):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
            figures.update({f"{100 * value:.2f}%", f"{100 * value:.1f}%"})

    def walk(obj, key=""):
        if isinstance(obj, dict):
            if {"size", "labels"} <= set(obj) and obj["size"]:
                add(obj["labels"].get("1", obj["labels"].get(1, 0)) / obj["size"])
            for k, v in obj.items():
                walk(v, k)
        elif isinstance(obj, list):
            for v in obj:
                walk(v, key)
        elif "accuracy" in key or "share" in key or key.endswith("_ci95"):
            add(obj)

    for path in (ROOT / "results").rglob("results.json"):
        walk(json.loads(path.read_text()))
    return figures


def percentages(text: str):
    for m in PERCENT.finditer(text):
        yield m.group(1) + "%", m.group(0)
        if m.group(2):
            yield m.group(2) + "%", m.group(0)


def test_results_are_committed_with_what_made_them():
    found = list((ROOT / "results").rglob("results.json"))
    assert found, "no results.json under results/"
    for path in found:
        results = json.loads(path.read_text())
        assert results["run_info"]["git_commit"], path
        # a score of the code, and timings on fixed batches: not a model's accuracy on a split
        if results.get("script") not in ("tools.mutation_report", "tools.bench_precision", "tools.bench_cpu",
                                         "tools.bench_allocator"):
            assert results["manifest"]["splits"]["test"]["sha256"], path


def test_every_percentage_is_a_committed_result_or_labelled_published():
    known = committed_figures()
    unbound = []
    for page in PAGES:
        for n, line in enumerate(page.read_text().splitlines(), 1):
            for figure, written in percentages(line):
                if figure in PUBLISHED:
                    if "published" not in line.lower():
                        unbound.append(f"{page.name}:{n}: {written} is published but not labelled so")
                elif figure not in known and figure not in SETTINGS:
                    unbound.append(f"{page.name}:{n}: {written} is in no committed results.json")
    assert not unbound, "\n".join(unbound)


def test_the_figures_check_catches_a_figure_no_run_produced():
    assert list(percentages("| loop | **85.55%** (83.94–87.02%) | 3% |")) == [
        ("85.55%", "85.55%"), ("83.94%", "83.94–87.02%"), ("87.02%", "83.94–87.02%"), ("3%", "3%")]
    assert "12.34%" not in committed_figures()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


def test_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 160
    assert len(list((ROOT / "docs").glob("*.md"))) >= 5
