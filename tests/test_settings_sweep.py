"""Every script's numeric settings swept with 0, -1, an empty value and a word. A bad value ends the script with exit
code 2 and one line on stderr, `error: KEY: ...`, before anything is loaded or written; a value a setting takes on
purpose (listed here, by hand) parses."""
import dataclasses
import importlib
import typing

import pytest

from common.config import _is_library, parse, run_main
from tests.test_config import SCRIPTS

SWEEP = ("0", "-1", "", "many")
# 0 or -1 where a setting means something by it; every other numeric setting must refuse both
MEANINGFUL = {
    "seed": {"0"}, "split_seed": {"0"}, "data_seed": {"0"},  # any seed
    "weight_decay": {"0"}, "warmup_steps": {"0"}, "lora_dropout": {"0"}, "label_smoothing_factor": {"0"},
    "adam_beta1": {"0"}, "adam_beta2": {"0"}, "eval_delay": {"0"}, "router_aux_loss_coef": {"0"},
    "dataloader_num_workers": {"0"},  # data loaded in the main process
    "errors": {"0"},  # analysis.report: no ERRORS.md
    "save_total_limit": {"0", "-1"},  # 0 or less: keep every checkpoint (Hugging Face's meaning)
}
LIBRARY_MEANINGFUL = {
    "max_steps": {"0", "-1"},  # Hugging Face's "not set": 0 or less, the epochs count
    "local_rank": {"0", "-1"},  # a rank, or -1: not launched
    "max_grad_norm": {"0"},  # the Trainer skips clipping at 0 (the loop's own max_grad_norm must be above 0)
}


def numeric_settings(module):
    """(class, field name, optional) of every int or float setting (or list of them) of a script."""
    for cls in importlib.import_module(module).SETTINGS:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kinds = set(typing.get_args(hints[f.name])) | {hints[f.name]}
            kinds |= {a for k in list(kinds) for a in typing.get_args(k)}  # list[float]
            if f.init and kinds & {int, float} and bool not in kinds:
                yield cls, f.name, type(None) in kinds


def meaningful(cls, name: str, optional: bool) -> set[str]:
    library = LIBRARY_MEANINGFUL.get(name, set()) if _is_library(cls) else set()
    return MEANINGFUL.get(name, set()) | library | ({""} if optional and not _is_library(cls) else set())


CASES = [(module, cls.__name__, name, value, value in meaningful(cls, name, optional))
         for module in SCRIPTS for cls, name, optional in numeric_settings(module) for value in SWEEP]


def test_the_sweep_covers_every_script_and_their_library_settings():
    swept = {(module, name) for module, _, name, _, _ in CASES}
    assert {module for module, _ in swept} >= {"distilbert.train_loop", "distilbert.train_trainer",
                                               "mistral.train_sft", "mistral.evaluate", "baseline.tfidf"}
    assert ("mistral.train_sft", "per_device_train_batch_size") in swept  # an SFTConfig field
    assert len(CASES) > 500


@pytest.mark.parametrize("module, owner, key, value, valid", CASES,
                         ids=[f"{m}-{k}={v or 'empty'}" for m, _, k, v, _ in CASES])
def test_a_numeric_setting_refuses_what_it_cannot_mean(module, owner, key, value, valid, tmp_path, monkeypatch,
                                                       capsys):
    script = importlib.import_module(module)
    if valid:  # "" for an optional setting of ours means "not set"
        parse(script.SETTINGS, [f"--{key}", value], defaults=getattr(script, "DEFAULTS", None))
        return
    monkeypatch.chdir(tmp_path)  # every default run folder or output path lands here
    with pytest.raises(SystemExit) as exit_:
        run_main(script.main, [f"--{key}", value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert err.startswith(f"error: {key}: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir()), f"{module} wrote {sorted(p.name for p in tmp_path.iterdir())}"
