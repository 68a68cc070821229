"""Pieces shared by the experiment scripts: IMDB data, metrics, run tracking, config parsing.

Importing this package (every experiment package does, first) keeps code from the Hugging Face Hub out of the
process. bitsandbytes, imported on a CPU with AVX512-BF16, asks the `kernels` package for kernels-community's fused
CPU 4-bit kernel: online, that downloads the kernel's code from the Hub and runs it; offline, `kernels` prints a
notice. While bitsandbytes' CPU backend is imported, `kernels` is hidden from it, so it falls back to its own C
kernels and logs that it could not load the Hub's: that one message is dropped too, and nothing else.
IMDB_HUB_KERNELS=1 lets bitsandbytes fetch the Hub kernel (docs/mistral.md says what it changes).
"""
import importlib.machinery
import logging
import os
import sys

KERNELS_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"
BITSANDBYTES_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"  # the module that asks for the kernel, and its logger
HUB_KERNELS_OPT_IN = "IMDB_HUB_KERNELS"


def hub_kernels_allowed() -> bool:
    return os.environ.get(HUB_KERNELS_OPT_IN, "") == "1"


def _not_the_kernels_notice(record: logging.LogRecord) -> bool:
    return hub_kernels_allowed() or not str(record.msg).startswith(KERNELS_NOTICE)


class _WithoutKernels:
    """A finder for bitsandbytes' CPU backend alone: its module runs with `kernels` unimportable (None in
    sys.modules makes `from kernels import ...` raise ImportError, which bitsandbytes catches), then `kernels` is
    put back as it was for everyone else (transformers imports it too)."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != BITSANDBYTES_CPU_LOGGER or hub_kernels_allowed():
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module  # a loader made for this one spec

        def run_without_kernels(module):
            before = sys.modules.get("kernels")
            sys.modules["kernels"] = None
            try:
                run_module(module)
            finally:
                if before is None:
                    del sys.modules["kernels"]
                else:
                    sys.modules["kernels"] = before
        spec.loader.exec_module = run_without_kernels
        return spec


if not any(isinstance(finder, _WithoutKernels) for finder in sys.meta_path):
    sys.meta_path.insert(0, _WithoutKernels())
# A filter on the logger object itself, which bitsandbytes gets by name when it is imported later
logging.getLogger(BITSANDBYTES_CPU_LOGGER).addFilter(_not_the_kernels_notice)
