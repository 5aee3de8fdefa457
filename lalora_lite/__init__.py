"""lalora_lite: LoRA fine-tuning under differentially private federated learning.

Modules (one concern each):
``lora`` adapters; ``methods`` schedules; ``per_example`` per-example gradients;
``privacy`` clipping, noise and sampling; ``accounting`` epsilon and noise calibration;
``smoothing`` LA-LoRA's filter; ``training`` the local update; ``federated`` FedAvg
simulation; ``data`` datasets and Dirichlet splits; ``models`` backbones; ``tasks``
ready-made tasks; ``cli`` the ``lalora`` command.

Importing the package pins the CPU kernels of torch, MKL and oneDNN to AVX2 (``cpu_kernels``), so
that runs give the same bits on every x86 machine; ``LALORA_CPU_KERNELS=native`` opts out.
"""

from . import cpu_kernels

cpu_kernels.pin()  # before anything below computes with torch

from .federated import FederatedConfig, run_federated
from .lora import inject_lora, merge_lora
from .methods import METHODS, get_method
from .training import LocalConfig

__all__ = ["METHODS", "FederatedConfig", "LocalConfig", "get_method", "inject_lora", "merge_lora", "run_federated"]
__version__ = "0.1.0"
