"""Pieces shared by the experiment scripts: IMDB data, metrics, run tracking, config parsing.

Importing this package (every experiment package does, first) drops one log message: bitsandbytes, on a CPU with
AVX512-BF16, warns at import that the `kernels` package is missing for its fused CPU 4-bit kernel. The advice cannot
help offline (`kernels` downloads the kernel's code from the Hub when it runs), so it would be the first line every
command prints for nothing. Only that message is dropped; docs/small-models.md says how to turn the kernel on."""
import logging

KERNELS_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"
BITSANDBYTES_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"


def _not_the_kernels_notice(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(KERNELS_NOTICE)


# A filter on the logger object itself, which bitsandbytes gets by name when it is imported later
logging.getLogger(BITSANDBYTES_CPU_LOGGER).addFilter(_not_the_kernels_notice)
