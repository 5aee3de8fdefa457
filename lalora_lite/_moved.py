"""The import paths of modules that moved into subpackages keep working for one release, with a warning.

``import lalora_lite.plotting`` (or ``from lalora_lite.plotting import save_figure``) still works: a
finder on :data:`sys.meta_path` answers for each old name with a stand-in module whose names are the
new modules' own objects, and warns with a ``DeprecationWarning`` naming the new place.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

# old module -> the module(s) its names now live in (the first is the one to import from)
MOVED = {
    "profiles": ("tasks.profiles",),
    "loaders": ("tasks.loaders",),
    "prefix": ("tasks.prefix",),
    "experiments": ("study.comparison", "study.runs", "study.stored"),
    "search": ("study.search",),
    "stats": ("study.stats",),
    "stored": ("study.stored",),
    "estimate": ("study.estimate",),
    "transfer": ("study.transfer",),
    "plotting": ("study.plotting", "study.tables", "study.paths"),
    "paper": ("study.paper",),
    "style": ("study.style",),
    "audit": ("diagnostics.audit",),
    "audit_run": ("diagnostics.audit_run",),
    "authors_mechanism": ("diagnostics.authors_mechanism",),
}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201 - the finder protocol
        old = fullname.removeprefix(f"{self.package}.")
        return importlib.util.spec_from_loader(fullname, self) if old in MOVED and old != fullname else None

    def create_module(self, spec):  # noqa: ANN001, ANN201
        return None  # a plain module, filled in by exec_module

    def exec_module(self, module: ModuleType) -> None:
        targets = [f"{self.package}.{t}" for t in MOVED[module.__name__.removeprefix(f"{self.package}.")]]
        warnings.warn(
            f"{module.__name__} moved to {targets[0]}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        for target in reversed(targets):  # the first target's names win
            new = importlib.import_module(target)
            module.__dict__.update({k: v for k, v in vars(new).items() if not k.startswith("__")})


def install(package: str) -> None:
    """Answer for the old paths of ``package`` (once)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder(package))
