import os
from pathlib import Path

import pytest

# Tests never touch the network: a Hub call here would hang until it times out.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read once, when cuBLAS starts: deterministic GPU tests

from fixtures.synthetic import write_imdb  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# make run by a test: no "Entering directory" lines when the tests themselves run under make (make test)
MAKE = ["make", "--no-print-directory"]


@pytest.fixture
def imdb_dir(tmp_path: Path) -> Path:
    """A folder with synthetic train.parquet and test.parquet (400 reviews each)."""
    return write_imdb(tmp_path / "imdb")


@pytest.fixture(scope="session")
def real_imdb_dir() -> Path:
    folder = os.environ.get("IMDB_DATA_DIR")
    if not folder or not (Path(folder) / "train.parquet").is_file():
        pytest.skip("real IMDB not available: set IMDB_DATA_DIR to a folder with train.parquet and test.parquet")
    return Path(folder)


@pytest.fixture(scope="session")
def real_imdb(real_imdb_dir) -> dict:
    """The real train and test sets, read and cleaned once for every test that splits them (6 s each time)."""
    from common.data import load_imdb

    return load_imdb(real_imdb_dir)


@pytest.fixture(scope="session")
def tiny_distilbert(tmp_path_factory) -> Path:
    """A local checkpoint folder of a random 2-layer DistilBERT with a WordPiece tokenizer trained on the fly."""
    from tests.tiny_models import save_tiny_distilbert

    return save_tiny_distilbert(tmp_path_factory.mktemp("tiny_distilbert"))


def run_on_synthetic(tmp_path_factory, name: str, main, make_args, model: Path, *extra: str):
    """One run of a training script on fresh synthetic data, shared by the tests of a module."""
    tmp = tmp_path_factory.mktemp(name)
    out = tmp / "run"
    return out, main(make_args(model, write_imdb(tmp / "imdb"), out, tmp, *extra))


def pytest_collection_modifyitems(config, items):
    """`gpu` tests skip cleanly where CUDA is missing."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def deterministic_cuda():
    """Bitwise-repeatable CUDA kernels for the test (cuBLAS workspaces, no atomics-based reductions)."""
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    yield
    torch.use_deterministic_algorithms(False)
