"""What the machine can do fast, and the switches that use it: bf16 autocast and ``torch.compile``.

Every choice here falls back: bf16 defaults on only where it is native (CUDA,
or a CPU with AMX / AVX512-BF16; elsewhere it is emulated and slower than
fp32), and a compiled function that fails to compile is replaced by the eager
one with a one-line notice instead of an error.

``DT_NATIVE_BF16=1`` (or ``0``) overrides what is detected, so both defaults can be run and tested on any CPU:
forced on where the CPU lacks native bf16, the bf16 paths are emulated (slower, same results up to rounding).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, cast

import torch

from dt.validate import COMPILE_MODES, CompileMode

# CPU flags that mean bf16 matrix products run natively (Linux /proc/cpuinfo names).
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# Environment switch that overrides the detection ("1": native, "0": not native; unset: detect).
NATIVE_BF16_ENV = "DT_NATIVE_BF16"
# Flags worth reporting beside a speed figure.
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")


@cache
def cpu_model_and_flags() -> tuple[str, frozenset[str]]:
    """The CPU's model name and feature flags (empty flags where /proc/cpuinfo is absent)."""
    model, flags = "", frozenset[str]()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:  # the first processor's entries stand for all
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = frozenset(value.split())
    return model or platform.processor() or platform.machine(), flags


def native_bf16_override() -> bool | None:
    """``DT_NATIVE_BF16`` as a bool, or None where unset or empty.

    Raises:
        ValueError: a value other than 0 or 1 (one line naming the variable).
    """
    raw = os.environ.get(NATIVE_BF16_ENV, "").strip()
    if not raw:
        return None
    if raw not in ("0", "1"):
        raise ValueError(f"{NATIVE_BF16_ENV}={raw[:20]!r}: use 1 (treat bf16 as native), 0 (not native) or unset it")
    return raw == "1"


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix products are native (not emulated) on ``device`` (``DT_NATIVE_BF16`` overrides)."""
    forced = native_bf16_override()
    if forced is not None:
        return forced
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    _, flags = cpu_model_and_flags()
    return any(f in flags for f in NATIVE_BF16_FLAGS)


def resolve_bf16(requested: bool | None, device: torch.device) -> tuple[bool, str]:
    """bf16 autocast on or off, and the one line that says why.

    Args:
        requested: True or False to force it; None to decide by the hardware.
        device: Where the model runs.
    """
    native = native_bf16(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else describe_cpu()
    if requested is None:
        state = "on" if native else "off"
        why = "native bf16" if native else "no native bf16 (it would be emulated, slower than fp32)"
        if native_bf16_override() is not None:
            why = f"{NATIVE_BF16_ENV}={int(native)} says bf16 is {'native' if native else 'not native'} here"
        return native, f"precision: bf16 autocast {state} by default on {where}: {why}; --bf16/--no-bf16 overrides"
    if requested and not native:
        return True, f"precision: bf16 autocast forced on {where}, which emulates bf16: expect it slower than fp32"
    return requested, f"precision: bf16 autocast {'on' if requested else 'off'} (forced) on {where}"


def describe_cpu() -> str:
    """``model (cores, flags)``, short enough for one log line."""
    model, flags = cpu_model_and_flags()
    shown = [f for f in REPORTED_FLAGS if f in flags]
    return f"{model} ({os.cpu_count()} cores; {' '.join(shown) or 'no flags read'})"


def machine_info() -> dict[str, Any]:
    """What a speed figure was measured on."""
    model, flags = cpu_model_and_flags()
    info: dict[str, Any] = {
        "cpu": model,
        "cpu_flags": [f for f in REPORTED_FLAGS if f in flags],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def check_compile_mode(mode: str) -> CompileMode:
    """Refuse an unknown ``torch.compile`` mode before anything runs; the mode, typed."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {mode!r}; known: {', '.join(COMPILE_MODES)}")
    return cast(CompileMode, mode)


class CompiledOrEager:
    """Calls a compiled function; from its first failure on, the eager one.

    ``torch.compile`` compiles lazily, so a missing C++ compiler or an
    unsupported op shows up at the first call, not at ``torch.compile``. The
    failed call is re-run eagerly and ``notify`` gets one line; a genuine error
    raises again from the eager run.

    Args:
        compiled: The function to try first (built by ``torch.compile``, or anything that may fail).
        eager: The same computation, uncompiled.
        what: Names the function in the notice.
        notify: Receives the one-line notice.
    """

    def __init__(self, compiled: Callable, eager: Callable, what: str, notify: Callable[[str], None]) -> None:
        self.compiled: Callable | None = compiled
        self.eager = eager
        self.what = what
        self.notify = notify

    @property
    def active(self) -> bool:
        """Whether calls still go to the compiled function."""
        return self.compiled is not None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is None:
            return self.eager(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - any compile failure falls back; eager re-raises real errors
            first = (str(e).strip().splitlines() or [""])[0][:160]
            self.notify(f"torch.compile of {self.what} failed ({type(e).__name__}: {first}); running eager")
            self.compiled = None
            return self.eager(*args, **kwargs)


def compile_or_eager(
    fn: Callable,
    mode: str,
    what: str,
    device: torch.device,
    notify: Callable[[str], None],
    eager: Callable | None = None,
) -> Callable:
    """``fn`` compiled with inductor in ``mode`` (falling back as :class:`CompiledOrEager`), or ``fn`` for ``off``.

    ``reduce-overhead`` (CUDA graphs) needs CUDA; on a CPU it compiles with the default mode and says so.
    ``eager`` is what a failed compiled call falls back to (default ``fn``).
    """
    check_compile_mode(mode)
    if mode == "off":
        return fn
    if mode == "reduce-overhead" and device.type != "cuda":
        notify(f"compile mode reduce-overhead uses CUDA graphs, which need CUDA; {what} compiled in default mode")
        mode = "default"
    try:
        compiled = torch.compile(fn, mode=mode)
    except Exception as e:  # noqa: BLE001 - e.g. torch.compile unsupported on this Python
        notify(f"torch.compile unavailable ({type(e).__name__}: {e}); {what} runs eager")
        return fn
    return CompiledOrEager(compiled, eager or fn, what, notify)
