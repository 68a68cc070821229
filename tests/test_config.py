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


def test_every_shipped_config_parses():
    from baseline.tfidf import BaselineConfig

    cfg = parse_config(BaselineConfig, ["--config", str(ROOT / "configs/baseline.yaml")])
    assert cfg.protocol == "random_70_10_20"


def test_script_prints_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "baseline.tfidf", "--config", "configs/baseline.yaml",
                           "--ngram", "3"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown key(s) ngram") and proc.stderr.count("\n") == 1
