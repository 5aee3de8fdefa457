"""A run's checkpoint: the server's state after a round, saved atomically and read back safely.

Tensors and plain types only (``torch.load(weights_only=True)``), so a checkpoint file can never run
code when it is read. Pure input and output: whether a checkpoint may resume a run is
:func:`lalora_lite.federated.resume`'s question (same configuration).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch


def save_atomically(obj: object, path: Path) -> None:
    """``torch.save(obj, path)`` such that ``path`` is only ever absent or whole: written under a name
    of this process, then renamed (atomic), so neither an interruption nor a reader in another process
    (parallel workers building the same cache file) ever sees a half-written file."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    torch.save(obj, partial)
    partial.replace(path)


@dataclass
class Checkpoint:
    """What a run needs to continue after round ``round``."""

    config: dict
    round: int
    global_state: dict[str, torch.Tensor]
    ledgers: list[dict]
    history: list[dict]

    def save(self, path: Path) -> None:
        save_atomically(dataclasses.asdict(self), path)  # an interruption never leaves half a checkpoint

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        """Read a checkpoint of tensors and plain types only (``weights_only=True``: nothing is unpickled
        that could run code); a foreign or tampered file is a ``ValueError`` naming the file."""
        try:
            state = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as err:  # noqa: BLE001 - every unreadable file gets the same clear message
            raise ValueError(
                f"{path} is not a readable lalora_lite checkpoint ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:200]}); delete it to start the run afresh"
            ) from None
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(state, dict) or set(state) != fields:
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(
                f"{path} is not a lalora_lite checkpoint: expected the fields {sorted(fields)}, found {found}"
            )
        return cls(**state)
