import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from common.config import ConfigError, parse_config
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
    cfg = parse_config(Cfg, ["--config", str(path), "--num_train_epochs", "5", "--max_train_samples=100"])
    assert cfg.learning_rate == pytest.approx(1e-4)  # YAML 1.1 reads 1e-4 as a string: converted
    assert cfg.num_train_epochs == 5
    assert cfg.bf16 is True
    assert cfg.max_train_samples == 100
    assert cfg.C == [0.5, 2.0]
    assert cfg.model_name_or_path == "m"


def test_command_line_types():
    cfg = parse_config(Cfg, ["--bf16", "false", "--max_train_samples", "none", "--C", "1,2", "--learning_rate", "3e-5"])
    assert cfg.bf16 is False and cfg.max_train_samples is None and cfg.C == [1.0, 2.0]
    assert cfg.learning_rate == pytest.approx(3e-5)


@pytest.mark.parametrize("argv, match", [
    (["--learning_rat", "1"], r"unknown key\(s\) learning_rat in command line; valid keys: model_name_or_path, "),
    (["--num_train_epochs", "2.5"], "num_train_epochs: expected an integer"),
    (["--bf16", "maybe"], "bf16: expected true or false"),
    (["--learning_rate"], "--learning_rate needs a value"),
    (["stray"], "unexpected argument"),
    (["--config", "/no/such.yaml"], "config file not found: /no/such.yaml"),
])
def test_errors(argv, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(Cfg, argv)


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-4\nepochs: 3\n")
    with pytest.raises(ConfigError, match=rf"unknown key\(s\) epochs in {path}; valid keys:"):
        parse_config(Cfg, ["--config", str(path)])


def script_settings():
    """Each YAML in configs/ and how its script parses it."""
    from baseline.tfidf import BaselineConfig
    from distilbert.train_loop import LoopConfig
    from distilbert.train_trainer import ScriptArguments as TrainerScript
    from mistral.evaluate import EvalArguments
    from mistral.data import DataArguments
    from mistral.model import ModelArguments
    from mistral.prompts import PromptArguments
    from mistral.train_sft import ScriptArguments as SFTScript

    return {"baseline.yaml": BaselineConfig, "distilbert_loop.yaml": LoopConfig,
            "distilbert_trainer.yaml": (TrainerScript, "TrainingArguments"),
            "mistral_sft.yaml": (SFTScript, DataArguments, ModelArguments, PromptArguments, "SFTConfig"),
            "mistral_eval.yaml": (EvalArguments, DataArguments, ModelArguments, PromptArguments)}


def same(parsed, written) -> bool:
    if isinstance(parsed, list) and not isinstance(written, list):
        return parsed == [written]  # report_to: wandb -> ["wandb"]
    if isinstance(parsed, (int, float)) and not isinstance(parsed, bool):
        return parsed == pytest.approx(float(written))  # YAML 1.1 reads 5e-5 as a string
    return parsed == written or str(parsed) == str(written)  # HF's str enums: IntervalStrategy.EPOCH == "epoch"


def test_every_yaml_in_configs_parses_against_its_script_with_its_values():
    import dataclasses

    import yaml
    from transformers import TrainingArguments
    from trl import SFTConfig

    from common.config import parse_hf_args
    from mistral.train_sft import SFT_DEFAULTS

    settings = script_settings()
    assert {p.name for p in (ROOT / "configs").glob("*.yaml")} == set(settings)
    hf = {"TrainingArguments": TrainingArguments, "SFTConfig": SFTConfig}
    for name, types in settings.items():
        path = ROOT / "configs" / name
        written = yaml.safe_load(path.read_text())
        if isinstance(types, tuple):
            types = tuple(hf.get(t, t) for t in types)
            defaults = SFT_DEFAULTS if SFTConfig in types else None
            parsed = parse_hf_args(types, ["--config", str(path)], defaults=defaults)
        else:
            parsed = (parse_config(types, ["--config", str(path)]),)
        values = {f.name: getattr(obj, f.name) for obj in parsed for f in dataclasses.fields(obj)}
        wrong = {k: (values[k], v) for k, v in written.items() if not same(values[k], v)}
        assert not wrong, f"{name}: {wrong}"


def all_settings_classes():
    from tools.demo import DemoConfig
    from common.real_models import Args
    from distilbert.bench import BenchConfig as DistilBench
    from mistral.bench import BenchConfig as MistralBench

    classes = [c for types in script_settings().values() for c in (types if isinstance(types, tuple) else (types,))]
    return [c for c in classes if not isinstance(c, str)] + [DemoConfig, Args, DistilBench, MistralBench]


def test_every_setting_has_a_one_line_meaning():
    import dataclasses

    missing = [f"{c.__name__}.{f.name}" for c in all_settings_classes() for f in dataclasses.fields(c)
               if not f.metadata.get("help") or "\n" in f.metadata["help"]]
    assert not missing


@pytest.mark.parametrize("module", ["distilbert.train_loop", "distilbert.train_trainer", "mistral.train_sft",
                                    "mistral.evaluate", "baseline.tfidf", "distilbert.bench", "mistral.bench",
                                    "common.real_models", "tools.demo", "distilbert.predict"])
def test_help_lists_every_setting_with_its_default_and_meaning(module, capsys):
    import dataclasses
    import importlib

    source = importlib.import_module(module)
    with pytest.raises(SystemExit) as exit_:
        source.main(["--help"])
    assert exit_.value.code in (0, None)
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert text.startswith("usage: ") and "default" in text
    for cls in all_settings_classes():
        if cls.__module__ != module and not (cls.__name__ in ("ModelArguments", "PromptArguments", "DataArguments")
                                             and module in ("mistral.train_sft", "mistral.evaluate")):
            continue
        for f in dataclasses.fields(cls):
            assert f"--{f.name}" in text, f"{module} --help: no --{f.name}"
            assert " ".join(f.metadata["help"].split()) in text, f"{module} --help: no meaning of {f.name}"


@pytest.mark.parametrize("module", ["common.report", "common.compare", "common.plots", "common.seeds", "common.data"])
def test_tools_help_names_the_tool_and_what_it_does(module, capsys):
    import importlib

    source = importlib.import_module(module)
    with pytest.raises(SystemExit) as exit_:
        source.main(["--help"])
    assert exit_.value.code in (0, None)
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith(f"usage: python -m {module} ")
    assert " ".join(source.__doc__.split("\n\n")[0].split()) in text  # the docstring's first paragraph


def test_help_names_the_script_and_exits_0():
    proc = subprocess.run([sys.executable, "-m", "baseline.tfidf", "--help"], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0 and "usage: python -m baseline.tfidf [--config FILE.yaml]" in proc.stdout


def test_script_prints_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "baseline.tfidf", "--config", "configs/baseline.yaml",
                           "--ngram", "3"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown key(s) ngram") and proc.stderr.count("\n") == 1
