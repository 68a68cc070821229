import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from common.config import ConfigError, _is_library, parse
from tests.conftest import ROOT


@dataclass
class Cfg:
    model_name_or_path: str = "m"
    learning_rate: float = 5e-5
    num_train_epochs: int = 3
    bf16: bool = False
    max_train_samples: int | None = None
    C: list[float] = field(default_factory=lambda: [1.0])


def test_defaults_yaml_then_command_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-4\nnum_train_epochs: 2\nbf16: true\nC: [0.5, 2]\n")
    (cfg,) = parse([Cfg], ["--config", str(path), "--num_train_epochs", "5", "--max_train_samples=100"])
    assert cfg.learning_rate == pytest.approx(1e-4)  # YAML 1.1 reads 1e-4 as a string: converted
    assert cfg.num_train_epochs == 5
    assert cfg.bf16 is True
    assert cfg.max_train_samples == 100
    assert cfg.C == [0.5, 2.0]
    assert cfg.model_name_or_path == "m"


def test_command_line_types():
    (cfg,) = parse([Cfg], ["--bf16", "false", "--max_train_samples", "none", "--C", "1,2", "--learning_rate", "3e-5"])
    assert cfg.bf16 is False and cfg.max_train_samples is None and cfg.C == [1.0, 2.0]
    assert cfg.learning_rate == pytest.approx(3e-5)


@pytest.mark.parametrize("argv, match", [
    (["--learning_rat", "1"], r"^unknown key learning_rat in command line; did you mean learning_rate\?$"),
    (["--zzz", "1"], r"^unknown key zzz in command line; --help lists the valid keys$"),
    (["--num_train_epochs", "2.5"], "num_train_epochs: expected an integer"),
    (["--bf16", "maybe"], "bf16: expected true or false"),
    (["--learning_rate"], "--learning_rate needs a value"),
    (["stray"], "unexpected argument"),
    (["--config", "/no/such.yaml"], "config file not found: /no/such.yaml"),
])
def test_errors(argv, match):
    with pytest.raises(ConfigError, match=match):
        parse([Cfg], argv)


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-4\nepochs: 3\n")
    with pytest.raises(ConfigError, match=rf"unknown key epochs in {path}; did you mean num_train_epochs\?"):
        parse([Cfg], ["--config", str(path)])


def script_settings():
    """Each YAML in configs/ and the settings dataclasses its script parses it into."""
    from transformers import TrainingArguments
    from trl import SFTConfig

    from baseline.tfidf import BaselineConfig
    from common.data import BalancedArguments
    from distilbert.data import DataArguments
    from distilbert.model import EncoderArguments
    from distilbert.train_loop import LoopConfig
    from mistral.evaluate import EvalArguments
    from mistral.model import CausalLMArguments
    from mistral.prompts import PromptArguments
    from mistral.train_sft import ScriptArguments as SFTScript

    return {"baseline.yaml": (BaselineConfig,), "distilbert_loop.yaml": (LoopConfig,),
            "distilbert_trainer.yaml": (EncoderArguments, DataArguments, TrainingArguments),
            "mistral_sft.yaml": (SFTScript, BalancedArguments, CausalLMArguments, PromptArguments, SFTConfig),
            "mistral_eval.yaml": (EvalArguments, BalancedArguments, CausalLMArguments, PromptArguments)}


def same(parsed, written) -> bool:
    if isinstance(parsed, list) and not isinstance(written, list):
        return parsed == [written]  # report_to: wandb -> ["wandb"]
    if isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
        return parsed == pytest.approx(float(written))  # YAML 1.1 reads 5e-5 as a string
    return parsed == written or str(parsed) == str(written)  # HF's str enums: IntervalStrategy.EPOCH == "epoch"


def test_every_yaml_in_configs_parses_against_its_script_with_its_values():
    import dataclasses

    import yaml

    from mistral.train_sft import DEFAULTS

    settings = script_settings()
    assert {p.name for p in (ROOT / "configs").glob("*.yaml")} == set(settings)
    for name, types in settings.items():
        path = ROOT / "configs" / name
        written = yaml.safe_load(path.read_text())
        defaults = DEFAULTS if name == "mistral_sft.yaml" else None
        parsed = parse(types, ["--config", str(path)], defaults=defaults)
        values = {f.name: getattr(obj, f.name) for obj in parsed for f in dataclasses.fields(obj)}
        wrong = {k: (values[k], v) for k, v in written.items() if not same(values[k], v)}
        assert not wrong, f"{name}: {wrong}"


def test_a_library_dataclass_keeps_the_string_none_and_ours_reads_it_as_none():
    """report_to none is TrainingArguments' own word (None would mean its default); our optional settings read none
    as None (a cache_dir named none would make a folder of that name)."""
    from transformers import TrainingArguments

    from distilbert.data import DataArguments

    data, training = parse([DataArguments, TrainingArguments], ["--report_to", "none", "--cache_dir", "none",
                                                                "--output_dir", "x"])
    assert training.report_to in ("none", ["none"], [])
    assert data.cache_dir is None


def test_a_library_default_replaced_by_the_script_yields_to_yaml_and_command_line(tmp_path):
    from transformers import TrainingArguments

    path = tmp_path / "c.yaml"
    path.write_text("output_dir: x\nlearning_rate: 1e-4\n")
    (args,) = parse([TrainingArguments], ["--config", str(path)], defaults={"learning_rate": 3e-3, "seed": 7})
    assert args.learning_rate == pytest.approx(1e-4) and args.seed == 7
    (args,) = parse([TrainingArguments], ["--config", str(path), "--seed", "8"], defaults={"seed": 7})
    assert args.seed == 8


def all_settings_classes():
    from analysis.compare import CompareArguments
    from analysis.plots import PlotArguments
    from analysis.report import ReportArguments
    from analysis.seeds import SeedsArguments
    from common.data import ExportArguments
    from distilbert.bench import BenchConfig as DistilBench
    from distilbert.predict import PredictArguments
    from mistral.architecture import ArchitectureArguments
    from mistral.bench import BenchConfig as MistralBench
    from mistral.variant_mass import MassArguments
    from tools.demo import DemoConfig
    from tools.gpu_check import GpuCheckArguments
    from tools.prepare_models import Args

    classes = [c for types in script_settings().values() for c in types if not _is_library(c)]
    return classes + [DemoConfig, Args, DistilBench, MistralBench, CompareArguments, PlotArguments, ReportArguments,
                      SeedsArguments, ExportArguments, PredictArguments, ArchitectureArguments, MassArguments,
                      GpuCheckArguments]


def test_every_setting_has_a_one_line_meaning():
    import dataclasses

    missing = [f"{c.__name__}.{f.name}" for c in all_settings_classes() for f in dataclasses.fields(c)
               if not f.metadata.get("help") or "\n" in f.metadata["help"]]
    assert not missing


SCRIPT_OF = {"baseline.yaml": "baseline.tfidf", "distilbert_loop.yaml": "distilbert.train_loop",
             "distilbert_trainer.yaml": "distilbert.train_trainer", "mistral_sft.yaml": "mistral.train_sft",
             "mistral_eval.yaml": "mistral.evaluate"}
SCRIPTS = ["distilbert.train_loop", "distilbert.train_trainer", "mistral.train_sft", "mistral.evaluate",
           "mistral.variant_mass", "mistral.architecture", "baseline.tfidf", "distilbert.bench", "mistral.bench",
           "distilbert.predict", "common.data", "analysis.report", "analysis.compare", "analysis.plots",
           "analysis.seeds", "tools.prepare_models", "tools.demo", "tools.gpu_check", "tools.mutation_report",
           "tools.bench_precision", "tools.bench_cpu", "tools.bench_allocator", "tools.lock"]


@pytest.mark.parametrize("module", SCRIPTS)
def test_help_names_the_script_and_lists_every_setting_with_its_meaning(module, capsys):
    """Every script parses its settings one way: --help names it, says what it does (its docstring's first
    paragraph) and lists each setting of each dataclass it reads, with the meaning written where the setting is."""
    import dataclasses
    import importlib

    source = importlib.import_module(module)
    with pytest.raises(SystemExit) as exit_:
        source.main(["--help"])
    assert exit_.value.code in (0, None)
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith(f"usage: python -m {module} [--config FILE.yaml]")
    assert " ".join(source.__doc__.split("\n\n")[0].split()) in text
    own = [c for c in all_settings_classes() if c.__module__ == module]
    shared = [c for yaml, types in script_settings().items() if SCRIPT_OF[yaml] == module for c in types]
    for cls in own + shared:
        for f in dataclasses.fields(cls):
            if f.init:
                assert f"--{f.name} " in text, f"{module} --help: no --{f.name}"
                assert " ".join(str(f.metadata.get("help", "")).split()) in text, f"{module}: no meaning of {f.name}"


def test_every_script_parses_with_the_one_settings_parser():
    """No script builds its own argument parser or reads sys.argv by hand."""
    offenders = []
    for module in SCRIPTS:
        text = (ROOT / (module.replace(".", "/") + ".py")).read_text()
        if "argparse" in text or "sys.argv" in text or "parse(" not in text:
            offenders.append(module)
    assert not offenders


def test_help_names_the_script_and_exits_0():
    proc = subprocess.run([sys.executable, "-m", "baseline.tfidf", "--help"], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0 and "usage: python -m baseline.tfidf [--config FILE.yaml]" in proc.stdout


def test_script_prints_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "baseline.tfidf", "--config", "configs/baseline.yaml",
                           "--ngram", "3"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr == "error: unknown key ngram in command line; did you mean ngram_max?\n"


@pytest.mark.parametrize("module", SCRIPTS)
def test_script_docstring_opens_with_the_command_that_runs_it(module):
    """After its one-paragraph purpose, a script's docstring gives the command: `python -m MODULE ...`."""
    import importlib

    paragraphs = importlib.import_module(module).__doc__.split("\n\n")
    assert f"python -m {module}" in paragraphs[1], f"{module}: no `python -m {module}` right after its purpose"


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").rglob("*.yaml")))
def test_config_header_says_what_it_is_for_and_which_command_uses_it(path):
    header = []
    for line in (ROOT / path).read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    text = " ".join(header)
    assert len(header) >= 2, f"{path}: no header comment"
    assert "python -m " in text or "accelerate launch" in text, f"{path}: the header names no command"
    assert f"--config {path}" in text or f"--config_file {path}" in text, f"{path}: the command does not use it"


def test_no_setting_meaning_is_written_twice():
    """Each setting's one-line meaning is written in one place in the source: a setting that two scripts share is
    declared once (a shared dataclass, or a function that returns the field)."""
    import ast

    seen: dict[str, list[str]] = {}
    for path in sorted(ROOT.glob("*/*.py")):
        if path.parts[-2] in ("tests", ".venv", "mutants"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setting":
                texts = [a for a in node.args[1:2]] + [k.value for k in node.keywords if k.arg == "help"]
                for text in texts:
                    if isinstance(text, ast.Constant) and isinstance(text.value, str):
                        seen.setdefault(text.value, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert len(seen) > 100  # the walk found the settings
    assert {text: where for text, where in seen.items() if len(where) > 1} == {}
