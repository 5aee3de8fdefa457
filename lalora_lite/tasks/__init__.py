"""What to train on: the tasks (data, backbone, split), their profiles, and the loaders behind them.

* :mod:`.registry`: every task by name (:data:`TASKS`) and :func:`build_task`, which builds one for a
  profile and a seed; the builders live one task family per module: :mod:`.fmnist` and
  :mod:`.wordnet` (the offline stand-ins), :mod:`.hub` (the paper's tasks: GPU, internet) and
  :mod:`.digits` (tests and quick demos), on what they share in :mod:`.common`;
* :mod:`.profiles`: the named settings of a comparison (``smoke``, ``cpu``, ``colab``, ``paper``);
* :mod:`.loaders`: Fashion-MNIST and WordNet from local files, else from the Hugging Face hub;
* :mod:`.prefix`: the frozen prefix of the text stand-in, computed once.
"""

from .common import Task, TaskSpec
from .digits import digits_swin
from .registry import TASKS, build_task, get_profile, get_task

__all__ = ["TASKS", "Task", "TaskSpec", "build_task", "digits_swin", "get_profile", "get_task"]
_FAMILIES = ("common", "fmnist", "wordnet", "hub", "digits", "registry")


def __getattr__(name: str) -> object:
    """The other names of the old module ``lalora_lite.tasks`` (one release, with a warning naming the new place)."""
    import importlib
    import warnings

    for family in _FAMILIES:
        module = importlib.import_module(f"{__name__}.{family}")
        if not name.startswith("__") and hasattr(module, name):
            warnings.warn(
                f"{__name__}.{name} moved to {module.__name__}.{name}; the old path goes in the next release",
                DeprecationWarning,
                stacklevel=2,
            )
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
