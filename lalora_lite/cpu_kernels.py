"""The same floating-point results on every x86 CPU: torch, MKL and oneDNN pinned to AVX2 kernels.

torch (ATen), MKL and oneDNN each pick their SIMD kernels for the CPU they find, and an AVX-512
kernel adds in another order than an AVX2 one. A federated DP run amplifies that last-bit difference
over its rounds (the curves part after a few rounds; ``docs/CHANGELOG.md`` has the measured case), so a
comparison made partly on each kind of machine, or regenerated on another, would not be the same
numbers. Every one of the three libraries reads an
environment variable that caps the kernels it may use, at its first kernel (not at import):

* ``ATEN_CPU_CAPABILITY=avx2``: torch's own kernels (GELU, softmax, layer norm, reductions);
* ``MKL_CBWR=AVX2``: MKL's conditional numerical reproducibility (the GEMMs);
* ``ONEDNN_MAX_CPU_ISA=AVX2``: oneDNN (convolutions).

:func:`pin` sets them when ``lalora_lite`` is imported, before it computes anything, so the
``lalora`` command, its worker processes (which inherit the environment) and a notebook that imports
``lalora_lite`` before its first computation all get AVX2 kernels. A variable already set is kept;
``LALORA_CPU_KERNELS=native`` leaves all three alone. Every x86-64 CPU of the last decade has AVX2
(a CPU without it keeps its own kernels); other architectures ignore the variables.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

PINS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
SWITCH = "LALORA_CPU_KERNELS"  # the opt-out: avx2 (default) or native
CHOICES = ("avx2", "native")


def pin(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set each of :data:`PINS` that ``environ`` does not already set, unless ``LALORA_CPU_KERNELS``
    is ``native``; returns the variables set. An unknown ``LALORA_CPU_KERNELS`` is an error."""
    choice = environ.get(SWITCH, "avx2")
    if choice not in CHOICES:
        raise ValueError(f"{SWITCH}={choice!r}; allowed: {', '.join(CHOICES)}")
    if choice == "native":
        return {}
    added = {name: value for name, value in PINS.items() if name not in environ}
    environ.update(added)
    return added
