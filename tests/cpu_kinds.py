"""Both kinds of CPU on any CPU: the checks that decide whether a CPU computes bf16 natively, forced either way.

In-process, fake_cpu() makes torch's checks answer (what `auto` precision asks). For a new Python process,
force_bitsandbytes_source() is code to run first: bitsandbytes decides at import, from has_avx512bf16(), whether to
register its fused CPU kernel (and ask the Hub for a faster one) and whether 4-bit layers repack their weights.
"""
import torch

FORCE_BITSANDBYTES = '''
import importlib.machinery, sys

class _ForceBitsandbytesCpu:
    """bitsandbytes.functional.has_avx512bf16 answers ANSWER from its import on, so every module that imports it by
    name (the CPU backend, Linear4bit) sees that answer."""

    def find_spec(self, name, path=None, target=None):
        if name != "bitsandbytes.functional":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def run_and_force(module):
            run(module)
            module.has_avx512bf16 = lambda: ANSWER
        spec.loader.exec_module = run_and_force
        return spec

sys.meta_path.insert(0, _ForceBitsandbytesCpu())
'''


def force_bitsandbytes_source(native_bf16: bool) -> str:
    return FORCE_BITSANDBYTES.replace("ANSWER", str(native_bf16))


def fake_cpu(monkeypatch, avx512_bf16: bool, amx: bool = False):
    """No GPU, and a CPU whose bf16 instructions are as given (torch.cpu's checks answer so), in torch and in
    bitsandbytes' 4-bit layers built from now on."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    import bitsandbytes.nn.modules

    monkeypatch.setattr(bitsandbytes.nn.modules, "has_avx512bf16", lambda: avx512_bf16)
