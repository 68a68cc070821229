"""The score of the last mutation run, printed and kept with the other measured results.

    make mutation                                   # runs mutmut, then this
    python -m tools.mutation_report --out results/mutation/results.json

Reads what mutmut recorded under mutants/ (every mutant's fate) and writes the counts, the share killed and the name
of every surviving mutant into a results.json, with where and when it was measured; docs/testing.md says why each
survivor is equivalent or accepted.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from common.config import UserError, parse, run_main, setting
from common.io import write_json
from common.environment import run_info

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Args:
    mutants: str = setting(str(ROOT / "mutants"), "mutmut's folder (its mutmut-cicd-stats.json and results)")
    out: str = setting(str(ROOT / "results/mutation/results.json"), "where the score and the survivors are written")


def survivors(folder: Path) -> list[str]:
    """The names `mutmut results` lists as survived."""
    out = subprocess.run([str(Path(sys.executable).with_name("mutmut")), "results"], cwd=folder.parent,
                         capture_output=True, text=True, check=True).stdout
    return sorted(line.split(":")[0].strip() for line in out.splitlines() if line.strip().endswith(": survived"))


SETTINGS = (Args,)


def main(argv=None) -> dict:
    (args,) = parse(SETTINGS, argv)
    stats_path = Path(args.mutants) / "mutmut-cicd-stats.json"
    if not stats_path.is_file():
        raise UserError(f"{stats_path}: not found; run make mutation first")
    s = json.loads(stats_path.read_text())
    checked = s["total"] - s["skipped"]
    killed = s["killed"] + s["timeout"]
    names = survivors(Path(args.mutants))
    if len(names) != s["survived"]:
        raise UserError(f"mutmut results lists {len(names)} survivors, its stats {s['survived']}: run it again")
    results = {"script": "tools.mutation_report", "mutants": checked, "killed": s["killed"], "timed_out": s["timeout"],
               "survived": s["survived"], "no_tests": s["no_tests"], "score": killed / checked,
               "survivors": names, "run_info": run_info()}
    write_json(args.out, results)
    print(f"{checked} mutants: {s['killed']} killed, {s['timeout']} timed out, {s['survived']} survived, "
          f"{s['no_tests']} reached by no test; score {100 * results['score']:.1f}% killed -> {args.out}")
    return results


if __name__ == "__main__":
    run_main(main)
