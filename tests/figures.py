"""The figures on the README and docs/ pages, and where docs/figures.yaml says each comes from.

A figure is a number written with a unit (%, points, x, s or seconds, min or minutes, h or hours, MiB, GiB), a
thousands separator or a decimal point, or a whole number of 100 or more, outside code, links' targets and the
generated tables. docs/figures.yaml binds each figure about our runs, per page, to its source: `FILE#KEY` (FILE under
results/, KEY a dotted path into its JSON, list items by number), a list of such sources that all hold it,
{sum|min|max|abs: [sources]} for a figure computed from them, or {not_measured: why} for a figure that is a setting,
a goal, a version or arithmetic on published figures on that page. The value must round to the figure as written,
in its unit and decimals.

    python -m tests.figures README.md      # the page's figures that nothing binds, with the keys that hold them
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
MAP = ROOT / "docs" / "figures.yaml"
GENERATED = [  # tables a program writes and a test keeps equal to its output: bound by construction
    ("<!-- results table: made by", "<!-- end of results table -->"),  # analysis.report (test_docs.py)
    ("| DistilBERT (distilbert-base-uncased) | value |", "| of which the classification head |"),  # distilbert.model
    ("| parameter | Mistral 7B v0.1 | Mistral 7B Instruct v0.2 |", "| rope_theta |"),  # mistral.architecture
]
PUBLISHED = {"93.82%", "93.56%", "96.4%", "63%", "63.7 min"}  # the original work's figures, quoted: labelled so
SETTINGS = {  # figures that are settings, definitions, goals or versions, not measurements
    "95%": "the confidence level of every interval",
    "10%": "the official protocol's validation share; the loop-vs-Trainer speed bound",
    "20%": "the test share of random_70_10_20",
    "3%": "Mistral's warm-up ratio (warmup_ratio 0.03)",
    "85%": "the mutation-testing goal (share of mutants killed)",
}
NUMBER = r"[+\-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
UNITS = r"%|\s?points\b|x\b|\s?s\b|\s?seconds?\b|\s?min\b|\s?minutes?\b|\s?h\b|\s?hours?\b|\s?MiB\b|\s?GiB\b"
TOKEN = re.compile(rf"(?<![\w.\-/=])({NUMBER})(?:–({NUMBER}))?({UNITS})?(?![\w]|\.\d)")
SCALE = {"%": 100, "points": 100, "min": 1 / 60, "minute": 1 / 60, "minutes": 1 / 60, "h": 1 / 3600, "hour": 1 / 3600,
         "hours": 1 / 3600, "GiB": 1 / 1024}


@dataclass(frozen=True)
class Figure:
    text: str  # as written, unit included: "85.55%", "642 s", "2,000"
    value: float
    decimals: int
    unit: str
    line: int


def visible_text(page_text: str) -> str:
    """The page without code, link targets, HTML comments and generated tables (line breaks kept, so numbering
    holds)."""
    def blank(m):
        return re.sub(r"[^\n]", " ", m.group(0))

    text = page_text
    for start, end in GENERATED:
        if start in text and end in text:
            i = text.index(start)
            j = text.index("\n", text.index(end)) if "\n" in text[text.index(end):] else len(text)
            text = text[:i] + re.sub(r"[^\n]", " ", text[i:j]) + text[j:]
    text = re.sub(r"```.*?```", blank, text, flags=re.S)
    text = re.sub(r"<!--.*?-->", blank, text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", blank, text)
    return re.sub(r"\]\([^)\s]*\)", lambda m: "]" + re.sub(r"[^\n]", " ", m.group(0)[1:]), text)


def number(text: str) -> tuple[float, int]:
    plain = text.replace(",", "").replace("−", "-")
    return float(plain), len(plain.split(".")[1]) if "." in plain else 0


def figures(page_text: str) -> list[Figure]:
    found = []
    for n, line in enumerate(visible_text(page_text).splitlines(), 1):
        for m in TOKEN.finditer(line):
            unit = (m.group(3) or "").strip()
            for part in filter(None, (m.group(1), m.group(2))):
                value, decimals = number(part)
                if unit or "," in part or decimals or abs(value) >= 100:
                    text = part + ("" if unit in ("", "%", "x") else " ") + unit
                    found.append(Figure(text, value, decimals, unit, n))
    return found


def lookup(source: str):
    """The value a `FILE#KEY` source names: FILE under results/, KEY a dotted path (list items by number)."""
    file, _, key = source.partition("#")
    value, parts = json.loads((RESULTS / file).read_text()), key.split(".")
    while parts:
        if isinstance(value, list):
            value, parts = value[int(parts[0])], parts[1:]
            continue
        # the longest run of parts that is a key: names may hold dots ("torch.compile (MiniLM loop step)")
        n = next((n for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in value), None)
        if n is None:
            raise KeyError(".".join(parts))
        value, parts = value[".".join(parts[:n])], parts[n:]
    return value


def resolve(binding) -> list[float]:
    """The values a binding stands for: one per source of a list, or one computed from several."""
    if isinstance(binding, str):
        return [lookup(binding)]
    if isinstance(binding, list):
        return [v for b in binding for v in resolve(b)]
    (op, sources), = binding.items()
    values = [v for s in sources for v in resolve(s)]
    values = [x for v in values for x in (v if isinstance(v, list) else [v])]
    if op == "abs":
        return [abs(v) for v in values]
    return [{"sum": sum, "min": min, "max": max}[op](values)]


def holds(value, figure: Figure) -> bool:
    """Whether a value, in the figure's unit and rounded to its decimals, is the figure as written."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    return abs(value * SCALE.get(figure.unit, 1) - figure.value) <= 0.5 * 10 ** -figure.decimals + 1e-9


def read_map() -> dict:
    return yaml.safe_load(MAP.read_text()) or {}


def check(page_text: str, bound: dict) -> list[str]:
    """What is wrong with a page's figures: one not bound (nor published, labelled so, nor a setting), a binding
    whose source does not hold its figure, a binding for a figure the page no longer has."""
    lines, problems = page_text.splitlines(), []
    found = figures(page_text)
    for fig in found:
        if fig.text in PUBLISHED:
            if "published" not in lines[fig.line - 1].lower():
                problems.append(f"line {fig.line}: {fig.text} is published but not labelled so")
        elif fig.text not in SETTINGS and fig.text not in bound:
            problems.append(f"line {fig.line}: {fig.text} is bound to no results file")
    written = {fig.text: fig for fig in found}
    for text, binding in bound.items():
        if text not in written:
            problems.append(f"{text}: bound, but not on the page")
            continue
        if isinstance(binding, dict) and "not_measured" in binding:
            continue
        try:
            values = resolve(binding)
        except (OSError, KeyError, IndexError, ValueError) as e:
            problems.append(f"{text}: {binding} cannot be read ({type(e).__name__}: {e})")
            continue
        wrong = [v for v in values if not holds(v, written[text])]
        if wrong:
            problems.append(f"{text}: {binding} holds {', '.join(f'{v:g}' for v in wrong)}, not {text}")
    return problems


def all_values(obj, key="") -> list[tuple[str, float]]:
    """Every number in a JSON document, with its dotted key."""
    if isinstance(obj, dict):
        return [kv for k, v in obj.items() for kv in all_values(v, f"{key}.{k}" if key else str(k))]
    if isinstance(obj, list):
        return [kv for i, v in enumerate(obj) for kv in all_values(v, f"{key}.{i}")]
    return [(key, obj)] if isinstance(obj, (int, float)) and not isinstance(obj, bool) else []


def candidates(figure: Figure) -> list[str]:
    """Every FILE#KEY under results/ that holds a figure (to help write the map; never to check it)."""
    found = []
    for path in sorted(RESULTS.rglob("*.json")):
        for key, value in all_values(json.loads(path.read_text())):
            if holds(value, figure):
                found.append(f"{path.relative_to(RESULTS).as_posix()}#{key}")
    return found


if __name__ == "__main__":
    page = sys.argv[1]
    bound = read_map().get(page, {})
    for fig in figures((ROOT / page).read_text()):
        if fig.text not in bound and fig.text not in SETTINGS and fig.text not in PUBLISHED:
            print(f"{page}:{fig.line}: {fig.text!r}: {candidates(fig)[:6]}")
