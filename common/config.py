"""Every script's settings: dataclasses set from a YAML file and `--key value` overrides, through one function.

    (cfg,) = parse([LoopConfig])                       # reads sys.argv: --config configs/x.yaml --learning_rate 1e-4
    script, training = parse([ScriptArguments, TrainingArguments], ["--config", "configs/x.yaml", "--seed", "3"])

The dataclasses hold the defaults; the YAML and the command line only override them. Unknown keys fail
with the list of valid ones, so a typo never silently runs the default.
"""
from __future__ import annotations

import dataclasses
import difflib
import enum
import operator
from dataclasses import dataclass
import sys
import types
import typing
from pathlib import Path
from typing import Any, Sequence

import yaml


class UserError(Exception):
    """Bad input from the user: printed as one line, no traceback."""


class ConfigError(UserError):
    pass


def first_line(error: BaseException) -> str:
    """An exception's message cut to its first line (library errors often run to many), or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def run_main(main, argv: Sequence[str] | None = None) -> None:
    """Run a script's main(); a UserError ends it with a one-line message and exit code 2, and an int that main
    returns is the exit code (a check that failed)."""
    try:
        code = main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if isinstance(code, int) and not isinstance(code, bool):
        sys.exit(code)


def setting(default: Any = dataclasses.MISSING, help: str = "", *, at_least: float | None = None,  # noqa: A002
            above: float | None = None, below: float | None = None, at_most: float | None = None) -> Any:
    """A settings field, its one-line meaning, which --help prints (Hugging Face's `help` metadata, so their parser
    shows it too), and for a number the range the parser holds it to: at_least / above a bound, below / at_most
    another. None passes for an optional field (it means "not set"). A list default is copied for each instance."""
    bounds = {k: v for k, v in (("at_least", at_least), ("above", above), ("below", below), ("at_most", at_most))
              if v is not None}
    metadata = {"help": help, **({"range": bounds} if bounds else {})}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# The ranges of the Hugging Face fields our Trainer scripts take (TrainingArguments, SFTConfig), which are declared
# in those libraries, without one: the one place they are stated. Fields not listed take any number.
LIBRARY_RANGES = {
    "per_device_train_batch_size": {"at_least": 1}, "per_device_eval_batch_size": {"at_least": 1},
    "gradient_accumulation_steps": {"at_least": 1}, "eval_accumulation_steps": {"at_least": 1},
    "num_train_epochs": {"above": 0}, "learning_rate": {"above": 0}, "adam_epsilon": {"above": 0},
    "weight_decay": {"at_least": 0}, "warmup_steps": {"at_least": 0}, "max_grad_norm": {"at_least": 0},
    "adam_beta1": {"at_least": 0, "below": 1}, "adam_beta2": {"at_least": 0, "below": 1},
    "label_smoothing_factor": {"at_least": 0, "below": 1}, "neftune_noise_alpha": {"above": 0},
    "logging_steps": {"above": 0}, "eval_steps": {"above": 0}, "save_steps": {"above": 0},
    "eval_delay": {"at_least": 0}, "torch_empty_cache_steps": {"at_least": 1},
    "dataloader_num_workers": {"at_least": 0}, "dataloader_prefetch_factor": {"at_least": 1},
    "ddp_bucket_cap_mb": {"at_least": 1}, "ddp_timeout": {"at_least": 1}, "seed": {"at_least": 0},
    "data_seed": {"at_least": 0}, "max_length": {"at_least": 1}, "dataset_num_proc": {"at_least": 1},
    "router_aux_loss_coef": {"at_least": 0}, "pad_to_multiple_of": {"at_least": 1},
    # max_steps -1 and local_rank -1 mean "not set"; save_total_limit 0 or less keeps every checkpoint
    "max_steps": {"at_least": -1}, "local_rank": {"at_least": -1},
}
BOUNDS = {"at_least": (operator.ge, ">="), "above": (operator.gt, ">"), "below": (operator.lt, "<"),
          "at_most": (operator.le, "<=")}


def check_range(key: str, value: Any, bounds: dict) -> None:
    """A ConfigError naming the key when a number, or any number of a list, is outside its bounds (or the list is
    empty)."""
    numbers = value if isinstance(value, list) else [value]
    expected = " and ".join(f"{BOUNDS[k][1]} {v:g}" for k, v in bounds.items())
    if not numbers:
        raise ConfigError(f"{key}: expected at least one number {expected}, got none")
    for number in numbers:
        if isinstance(number, (int, float)) and not all(BOUNDS[k][0](number, v) for k, v in bounds.items()):
            raise ConfigError(f"{key}: expected a number {expected}, got {number!r}")


@dataclass
class RemoteCodeArguments:
    """Settings of every script that loads a model folder."""
    trust_remote_code: bool = setting(False, "allow the model folder's own Python code")


@dataclass
class FiguresArguments:
    """Settings of the benchmarks."""
    output: str | None = setting(None, "also write the figures as JSON here")


ORDER = "Settings: the defaults below, then the YAML file's values, then --key value on the command line."


def _is_library(cls: type) -> bool:
    """Hugging Face's own argument dataclasses (TrainingArguments, SFTConfig): their fields keep string values such
    as report_to none, which their __post_init__ reads."""
    return cls.__module__.split(".")[0] in ("transformers", "trl")


def print_help(script: dict, types: Sequence[type], defaults: dict) -> None:
    """The script's name and purpose (its docstring's first paragraph), then every setting: name, type, default and
    meaning. `script`: the module globals of the script that parses."""
    spec = script.get("__spec__")
    name = spec.name if spec is not None else script.get("__name__")
    doc = (script.get("__doc__") or "").split("\n\n")[0].strip()
    print(f"usage: python -m {name} [--config FILE.yaml] [--key value ...]\n\n{doc}\n\n{ORDER}\n")
    for cls in types:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            default = defaults.get(f.name, default)
            kind = str(hints[f.name]).replace("typing.", "").replace("<class '", "").replace("'>", "")
            meaning = " ".join(str(f.metadata.get("help", "")).split())
            print(f"  --{f.name} {kind} (default: {default})\n      {meaning}")


def _convert(value: Any, tp: Any, key: str, none_is_null: bool = True) -> Any:
    """Convert a YAML or command-line value to the field's annotated type (a type we do not know: left as it is)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (none_is_null and isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        listed = [a for a in args if typing.get_origin(a) in (list, tuple)]
        if listed and (isinstance(value, (list, tuple)) or (isinstance(value, str) and "," in value)):
            return _convert(value, listed[0], key)  # report_to: wandb,trackio
        return _convert(value, args[0], key, none_is_null)
    if origin in (list, tuple):
        (inner,) = typing.get_args(tp)[:1] or (str,)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(v, inner, key) for v in value]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):  # a library's choices: eval_strategy, lr_scheduler_type
        choices = [e.value for e in tp]
        if getattr(value, "value", value) not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, typing.get_args(tp)))}, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is str:
        return value if isinstance(value, str) else str(value)
    if tp in (int, float):
        try:
            number = float(value)  # also takes "5e-5" and "1e3", which YAML 1.1 reads as strings
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and not number.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(number) if tp is int else number
    return value


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({first_line(e)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value, got {type(data).__name__}")
    return data


def parse_overrides(argv: Sequence[str]) -> tuple[str | None, dict[str, str]]:
    """Split `--config FILE --key value --key=value ...` into the config path and a dict of overrides."""
    config_path, overrides, i = None, {}, 0
    argv = list(argv)
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}: settings are given as --key value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ConfigError(f"--{key} needs a value")
            value, i = argv[i + 1], i + 1
        key = key.replace("-", "_")
        if key == "config":
            config_path = value
        else:
            overrides[key] = value
        i += 1
    return config_path, overrides


def parse(types: Sequence[type], argv: Sequence[str] | None = None, defaults: dict | None = None) -> tuple:
    """One instance of each settings dataclass (ours, or Hugging Face's TrainingArguments and SFTConfig): its own
    defaults, then `defaults` (a library default this script replaces), then the YAML named by --config, then
    `--key value` overrides. A key no dataclass has, or a value of the wrong type, is a one-line ConfigError."""
    argv = sys.argv[1:] if argv is None else list(argv)
    defaults = defaults or {}
    if "--help" in argv or "-h" in argv:
        print_help(sys._getframe(1).f_globals, types, defaults)  # the calling script's name and docstring
        raise SystemExit(0)
    config_path, overrides = parse_overrides(argv)
    owner = {f.name: cls for cls in types for f in dataclasses.fields(cls) if f.init}
    values: dict[str, Any] = dict(defaults)
    for where, given in ((config_path, load_yaml(config_path) if config_path else {}), ("command line", overrides)):
        for key in given:
            if key not in owner:
                # a near spelling (learning_rat), else a key that has it as a part (epochs: num_train_epochs)
                close = difflib.get_close_matches(key, owner, n=1) or [k for k in owner if key in k.split("_")][:1]
                hint = f"did you mean {close[0]}?" if close else "--help lists the valid keys"
                raise ConfigError(f"unknown key {key} in {where}; {hint}")
        values.update(given)
    parsed = []
    for cls in types:
        hints = typing.get_type_hints(cls)
        kwargs = {k: _convert(v, hints[k], k, none_is_null=not _is_library(cls)) for k, v in values.items()
                  if owner[k] is cls and not (v is None and _is_library(cls))}  # YAML null: the library's default
        for key, value in kwargs.items():
            bounds = field_range(cls, key)
            if bounds:
                check_range(key, value, bounds)
        try:
            parsed.append(cls(**kwargs))
        except (ValueError, TypeError) as e:  # the dataclass's own checks (__post_init__)
            raise ConfigError(first_line(e)) from None
    return tuple(parsed)


def field_range(cls: type, key: str) -> dict:
    """A field's bounds: declared with setting() in ours, listed in LIBRARY_RANGES for Hugging Face's."""
    if _is_library(cls):
        return LIBRARY_RANGES.get(key, {})
    return next(f.metadata.get("range", {}) for f in dataclasses.fields(cls) if f.name == key)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)
