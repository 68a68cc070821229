"""One dataclass per script, set from a YAML file and `--key value` overrides.

    cfg = parse_config(LoopConfig)            # reads sys.argv: --config configs/x.yaml --lr 1e-4
    cfg = parse_config(LoopConfig, ["--config", "configs/x.yaml", "--seed", "3"])

The dataclass holds the defaults; the YAML and the command line only override them. Unknown keys fail
with the list of valid ones, so a typo never silently runs the default.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

T = TypeVar("T")


class UserError(Exception):
    """Bad input from the user: printed as one line, no traceback."""


class ConfigError(UserError):
    pass


def first_line(error: BaseException) -> str:
    """An exception's message cut to its first line (library errors often run to many), or its type's name."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def run_main(main, argv: Sequence[str] | None = None) -> None:
    """Run a script's main(); a UserError ends it with a one-line message and exit code 2."""
    try:
        main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def setting(default: Any = dataclasses.MISSING, help: str = "") -> Any:  # noqa: A002 - HF's metadata key
    """A settings field and its one-line meaning, which --help prints (Hugging Face's convention, so their parser
    shows it too). A list default is copied for each instance."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def cli_parser(module: str, doc: str) -> argparse.ArgumentParser:
    """The argument parser of a tool without a settings dataclass: `python -m MODULE`, the first paragraph of its
    docstring, and each option's default in --help."""
    return argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n\n")[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


ORDER = "Settings: the defaults below, then the YAML file's values, then --key value on the command line."


def script_name() -> str:
    """`python -m NAME`'s NAME, for usage lines."""
    return getattr(getattr(sys.modules["__main__"], "__spec__", None), "name", None) or Path(sys.argv[0]).name


def print_help(cls: type) -> None:
    """Every setting of a script: name, type, default and meaning."""
    print(f"usage: python -m {script_name()} [--config FILE.yaml] [--key value ...]\n\n{ORDER}\n")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        kind = str(hints[f.name]).replace("typing.", "").replace("<class '", "").replace("'>", "")
        print(f"  --{f.name} {kind} (default: {default})\n      {f.metadata.get('help', '')}")


def _field_type(cls: type, field: dataclasses.Field) -> Any:
    return typing.get_type_hints(cls)[field.name]


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML or command-line value to the field's annotated type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _convert(value, args[0], key)
    if origin in (list, tuple):
        (inner,) = typing.get_args(tp)[:1] or (str,)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(v, inner, key) for v in value]
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


def _check_keys(cls: type, keys, where: str) -> None:
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in keys if k not in valid]
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in {where}; valid keys: {', '.join(valid)}")


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


def build_config(cls: type[T], values: dict[str, Any], where: str = "settings") -> T:
    _check_keys(cls, values, where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {k: _convert(v, _field_type(cls, fields[k]), k) for k, v in values.items()}
    return cls(**kwargs)


def parse_config(cls: type[T], argv: Sequence[str] | None = None) -> T:
    """Defaults from the dataclass, then the YAML named by --config, then --key value overrides."""
    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:
        print_help(cls)
        raise SystemExit(0)
    config_path, overrides = parse_overrides(argv)
    values: dict[str, Any] = {}
    if config_path:
        values.update(load_yaml(config_path))
        _check_keys(cls, values, config_path)
    _check_keys(cls, overrides, "command line")
    values.update(overrides)
    return build_config(cls, values)


def _optional_none(obj: Any) -> Any:
    """`--key none` on one of our own optional settings means None, as in parse_config (HfArgumentParser keeps the
    string: `--cache_dir none` would make a folder named none). HF's own fields keep their strings (report_to none)."""
    if type(obj).__module__.split(".")[0] in ("transformers", "trl"):
        return obj
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in typing.get_args(
                hints[f.name]):
            setattr(obj, f.name, None)
    return obj


def parse_hf_args(types: Sequence[type], argv: Sequence[str] | None = None, defaults: dict | None = None) -> tuple:
    """Like parse_config, for Hugging Face argument dataclasses (TrainingArguments, SFTConfig, ...) next to a
    script's own: one YAML and `--key value` overrides fill them all, through HfArgumentParser. `defaults` replace
    a library's own defaults for this script (the YAML and the command line still override them)."""
    from transformers import HfArgumentParser

    argv = sys.argv[1:] if argv is None else argv
    if "--help" in argv or "-h" in argv:  # HF's parser lists every field of every dataclass, with its help
        HfArgumentParser(types, prog=f"python -m {script_name()} [--config FILE.yaml]", description=ORDER).print_help()
        raise SystemExit(0)
    config_path, overrides = parse_overrides(argv)
    values: dict[str, Any] = load_yaml(config_path) if config_path else {}
    valid = sorted({f.name for t in types for f in dataclasses.fields(t) if f.init})
    for where, keys in ((config_path, values), ("command line", overrides)):
        unknown = [k for k in keys if k not in valid]
        if unknown:
            raise ConfigError(f"unknown key(s) {', '.join(unknown)} in {where}; valid keys: {', '.join(valid)}")
    list_fields = {f.name for t in types for f in dataclasses.fields(t)
                   if typing.get_origin(typing.get_type_hints(t).get(f.name)) is list}
    # on the command line a list is comma-separated, as for parse_config: --answer_words neg,pos
    values.update({k: v.split(",") if k in list_fields else v for k, v in overrides.items()})
    values = {**(defaults or {}), **values}
    args: list[str] = []
    for key, value in values.items():
        if value is None:
            continue  # YAML null: keep the field's default
        if isinstance(value, (list, tuple)):
            args += [f"--{key}", *map(str, value)]
        elif isinstance(value, dict):
            args += [f"--{key}", json.dumps(value)]
        else:
            args += [f"--{key}", str(value)]
    parser = HfArgumentParser(types)

    def error(message: str):
        raise ConfigError(message)

    parser.error = error  # a bad value is a one-line ConfigError, not argparse's usage dump
    try:
        return tuple(_optional_none(obj) for obj in parser.parse_args_into_dataclasses(args=args))
    except ValueError as e:  # raised by the dataclasses' own checks (__post_init__)
        raise ConfigError(first_line(e)) from None


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)
