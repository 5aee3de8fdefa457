"""The CPU kernel pins (lalora_lite/cpu_kernels.py): importing the package must give the same bits as
starting Python with the pins in its environment, and opting out must give the machine's own kernels."""

import os
import subprocess
import sys

import pytest

from lalora_lite import cpu_kernels

# kernels whose summation order depends on the SIMD width (GELU and softmax differ between AVX-512 and
# AVX2 on an AMD EPYC), a GEMM and a convolution; the exact bits of each result
PROBE = """
torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
x = torch.randn(64, 96, generator=g)
outs = [torch.nn.functional.gelu(x), torch.softmax(x, -1) ** 2, x @ torch.randn(96, 288, generator=g),
        torch.nn.functional.conv2d(torch.randn(8, 3, 28, 28, generator=g), torch.randn(16, 3, 4, 4, generator=g))]
print(torch.backends.cpu.get_cpu_capability(), *(o.double().sum().item().hex() for o in outs))
"""


def _probe(prelude: str, extra_env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in cpu_kernels.PINS and k != cpu_kernels.SWITCH}
    out = subprocess.run(
        [sys.executable, "-c", prelude + PROBE], env=clean | extra_env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_importing_the_package_pins_the_kernels_as_the_environment_does():
    pinned_from_the_start = _probe("import torch\n", cpu_kernels.PINS)
    # torch imported first, as in a notebook: the pins still act, because each library reads them lazily
    via_the_package = _probe("import torch\nimport lalora_lite\n", {})
    assert via_the_package == pinned_from_the_start
    assert not via_the_package.startswith("AVX512")


def test_native_leaves_the_machines_own_kernels():
    native = _probe("import torch\n", {})
    assert _probe("import torch\nimport lalora_lite\n", {cpu_kernels.SWITCH: "native"}) == native


def test_pin_keeps_what_is_already_set_and_names_a_bad_choice():
    env = {"MKL_CBWR": "COMPATIBLE"}
    assert cpu_kernels.pin(env) == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert env["MKL_CBWR"] == "COMPATIBLE"
    assert cpu_kernels.pin({"LALORA_CPU_KERNELS": "native"}) == {}
    with pytest.raises(ValueError, match="LALORA_CPU_KERNELS='avx512'; allowed: avx2, native"):
        cpu_kernels.pin({"LALORA_CPU_KERNELS": "avx512"})
