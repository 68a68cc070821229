"""The README and docs/ say only what the repo's committed results say: every figure about our runs is bound, in
docs/figures.yaml, to the results file and key it comes from, and that key holds it (tests/figures.py); published
figures are labelled so; and every relative link resolves."""
import json
import re

import pytest

from tests import figures as fig
from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


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


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_figure_is_bound_to_the_key_it_comes_from(page):
    name = page.relative_to(ROOT).as_posix()
    problems = fig.check(page.read_text(), fig.read_map().get(name, {}))
    assert not problems, f"{name} (docs/figures.yaml):\n" + "\n".join(problems)


def test_the_map_names_only_pages_that_exist():
    assert set(fig.read_map()) <= {p.relative_to(ROOT).as_posix() for p in PAGES}


PAGE = """The loop reached **85.55% (83.94–87.02%)** on 2,000 reviews in 642 s, and 1.42x faster in bf16.
The official baseline got 90.4%; the original loop got 93.82% (published). Settings: 512 tokens, batch 16, lr 5e-5.
"""
BOUND = {"85.55%": "small/distilbert_loop/results.json#test.accuracy",
         "83.94%": "small/distilbert_loop/results.json#test.accuracy_ci95.0",
         "87.02%": "small/distilbert_loop/results.json#test.accuracy_ci95.1",
         "2,000": "small/distilbert_loop/results.json#test.n",
         "642 s": "small/distilbert_loop/results.json#wall_time_s",
         "1.42x": "bench_precision/native_bf16/results.json#measurements.MiniLM-L6 loop step (16 x 256 tokens).speedup",
         "90.4%": "baseline/official/results.json#test.accuracy",
         "512": {"not_measured": "a setting"}}


def test_the_figures_a_page_holds_are_found_with_their_units():
    found = [(f.text, f.line) for f in fig.figures(PAGE)]
    assert found == [("85.55%", 1), ("83.94%", 1), ("87.02%", 1), ("2,000", 1), ("642 s", 1), ("1.42x", 1),
                     ("90.4%", 2), ("93.82%", 2), ("512", 2)]  # batch 16 and 5e-5: small whole numbers, not figures


def test_a_page_whose_figures_are_bound_passes():
    assert fig.check(PAGE, BOUND) == []


def test_a_figure_no_file_holds_fails():
    bound = {("640 s" if k == "642 s" else k): v for k, v in BOUND.items()}
    assert fig.check(PAGE.replace("642 s", "640 s"), bound) == [
        "640 s: small/distilbert_loop/results.json#wall_time_s holds 642.2, not 640 s"]
    assert fig.check(PAGE + "And 12.34% more.\n", BOUND) == ["line 3: 12.34% is bound to no results file"]


def test_a_figure_bound_to_the_wrong_key_fails_even_where_another_key_holds_it():
    """90.4% is the official-split baseline's test accuracy; the upper end of the loop's validation interval also
    rounds to 90.4%. The figure would pass any check that asks only whether some result holds it: bound to a key of
    the wrong run, it fails."""
    wrong = {**BOUND, "90.4%": "small/distilbert_loop/results.json#test.accuracy_positive"}
    assert fig.check(PAGE, wrong) == ["90.4%: small/distilbert_loop/results.json#test.accuracy_positive holds "
                                      "0.888016, not 90.4%"]
    assert fig.holds(json.loads((ROOT / "results/small/distilbert_loop/results.json").read_text())["validation"]
                     ["accuracy_ci95"][1], fig.figures("90.4%")[0])  # the coincidence is real


def test_a_published_figure_must_say_so_and_a_stale_binding_fails():
    assert fig.check(PAGE.replace(" (published)", ""), BOUND) == ["line 2: 93.82% is published but not labelled so"]
    assert fig.check(PAGE, {**BOUND, "77.7%": "mutation/results.json#score"}) == ["77.7%: bound, but not on the page"]


def test_computed_figures_and_units_convert_before_rounding():
    three = ["small/distilbert_loop/results.json#wall_time_s", "small/distilbert_trainer/results.json#wall_time_s",
             "small/mistral_sft/results.json#wall_time_s"]
    assert fig.check("The three runs: 3,072 s, or 51.2 min.", {"3,072 s": {"sum": three},
                                                               "51.2 min": {"sum": three}}) == []
    assert fig.check("behind by 0.64 points", {"0.64 points": {"abs": ["full/minilm_loop_vs_tfidf.json#difference"]}}) \
        == []


def anchors(page) -> set[str]:
    """The anchors GitHub makes of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    return {re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
            for line in page.read_text().splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


def test_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 160
    assert len(list((ROOT / "docs").glob("*.md"))) >= 5


def test_the_readme_results_table_is_the_one_make_report_makes_from_results():
    """One table, generated: `make report RUNS=results` writes it between the README's markers; the other pages
    link to it rather than copying it."""
    from analysis.report import TABLE_END, TABLE_START, summary_table

    text = (ROOT / "README.md").read_text()
    written = text.split(TABLE_START, 1)[1].split(TABLE_END, 1)[0].strip().splitlines()
    assert written == summary_table(ROOT / "results", ROOT / "README.md"), "run make report RUNS=results"
    assert text.index("not measured yet") < text.index(TABLE_START)  # said before the table, not after
    for page in PAGES[1:]:
        assert TABLE_START not in page.read_text()


def test_the_table_names_the_model_first_and_what_it_stands_in_for(tmp_path):
    from analysis.report import summary_table

    run = tmp_path / "results" / "small" / "loop"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({
        "script": "distilbert.train_loop", "model": "models/minilm-l6", "model_parameters": 22_700_000,
        "precision": "bf16", "split_sizes_used": {"train": 2000},
        "manifest": {"protocol": "random_70_10_20", "splits": {"train": {"size": 34704}}},
        "test": {"accuracy": 0.8555, "accuracy_ci95": [0.8394, 0.8702], "f1": 0.8552, "n": 2000}}))
    assert summary_table(tmp_path / "results", tmp_path / "README.md")[2] == (
        "| all-MiniLM-L6-v2 (stand-in for DistilBERT-base) | hand-written loop | `random_70_10_20` | bf16 | "
        "2,000 / 2,000 | **85.55% (83.94–87.02%)** | 0.8552 | [small/loop](results/small/loop/results.json) |")
