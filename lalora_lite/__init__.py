"""lalora_lite: LoRA fine-tuning under differentially private federated learning.

The library is the flat modules of this package; the machinery around it lives in three subpackages
that the library never imports. Read the library in this order (about 1,400 lines, one sitting);
the parts in brackets can wait for a second reading:

1. ``lora``: ``LoRALinear`` (``W0 x + s B A x``), ``inject_lora``, ``set_active``.
2. ``methods``: the seven methods as schedules of which factor trains at local step ``k`` of round
   ``t``. ``alternate_per_step`` *is* LA-LoRA's alternation.
3. ``per_example``: per-example gradients of ``A`` and ``B`` in closed form (and why Swin's windows
   are folded back to images); ``per_example_by_loop`` is the slow reference they are checked against.
4. ``privacy``: ``clip_and_sum`` and ``noisy_gradient``, the DP step. [``SecureRandom`` and the
   CUDA branch of ``gaussian_noise``.]
5. ``smoothing``: LA-LoRA's low-pass filter on the factor gradients.
6. ``training``: ``local_update``, one loop for every method, then ``step_gradient``. [The
   precision and canary branches.]
7. ``accounting``: ``calibrate_noise_multiplier`` and ``PrivacyLedger``, the epsilon each client spent.
8. ``federated``: ``fedavg`` (FedAvg by tensor name), ``train_client``, ``run_federated``.
   [``validate``, ``ServerState`` and ``round_row``: bookkeeping shared with Flower.]
9. As needed: ``sampling`` (which clients train), ``data``, ``models``, ``precision``, ``checkpoint``,
   ``cpu_kernels`` (the same bits on every x86 CPU).

The machinery, one reason each:

* ``tasks/``: what to train on (the stand-ins, the paper's tasks, their profiles and loaders);
* ``study/``: the comparison (``lalora compare``) and everything drawn from it (figures, tables,
  statistics, the paper's reported numbers);
* ``diagnostics/``: one instrument per notebook (coupling, noise, sharpness, the privacy audit).

And the entry points: ``cli`` (the ``lalora`` command) and ``flower`` (the optional Flower adapter).

Importing the package pins the CPU kernels of torch, MKL and oneDNN to AVX2 (``cpu_kernels``), so
that runs give the same bits on every x86 machine; ``LALORA_CPU_KERNELS=native`` opts out.
"""

from . import _moved, cpu_kernels

cpu_kernels.pin()  # before anything below computes with torch
_moved.install(__name__)  # old import paths of the modules that moved into subpackages

from .federated import FederatedConfig, fedavg, run_federated  # noqa: E402 - after the pin
from .lora import inject_lora, merge_lora  # noqa: E402
from .methods import METHODS, get_method  # noqa: E402
from .privacy import clip_and_sum, noisy_gradient  # noqa: E402
from .training import LocalConfig, local_update  # noqa: E402

__all__ = [
    "METHODS",
    "FederatedConfig",
    "LocalConfig",
    "clip_and_sum",
    "fedavg",
    "get_method",
    "inject_lora",
    "local_update",
    "merge_lora",
    "noisy_gradient",
    "run_federated",
]
__version__ = "0.1.0"
