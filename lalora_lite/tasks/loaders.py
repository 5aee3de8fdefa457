"""Raw data sources: offline Debian packages first, the Hugging Face hub as fallback.

* Fashion-MNIST: idx files of the Debian package ``dataset-fashion-mnist``, else the
  hub dataset ``zalando-datasets/fashion_mnist``.
* WordNet 3.0 noun glosses: ``/usr/share/wordnet/data.noun`` of ``wordnet-base``.
* Paper-scale data (GPU profile): any image-classification or GLUE dataset that
  ``datasets.load_dataset`` can fetch, or a folder written by ``Dataset.save_to_disk``.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = Path(os.environ.get("LALORA_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
FASHION_MNIST_HUB = "zalando-datasets/fashion_mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
WORDNET_NOUNS = Path(os.environ.get("LALORA_WORDNET_NOUNS", "/usr/share/wordnet/data.noun"))
# WordNet lexicographer files of nouns (field 2 of data.noun), as named in WordNet's lexnames.
NOUN_LEXNAMES = {
    3: "Tops",
    4: "act",
    5: "animal",
    6: "artifact",
    7: "attribute",
    8: "body",
    9: "cognition",
    10: "communication",
    11: "event",
    12: "feeling",
    13: "food",
    14: "group",
    15: "location",
    16: "motive",
    17: "object",
    18: "person",
    19: "phenomenon",
    20: "plant",
    21: "possession",
    22: "process",
    23: "quantity",
    24: "relation",
    25: "shape",
    26: "state",
    27: "substance",
    28: "time",
}


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) idx file: magic ``0 0 dtype ndim``, big-endian int32 sizes, then data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(split: str, root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 28, 28), labels int64 (N,))`` of the ``train`` (60k) or ``test`` (10k) split."""
    root = root or FASHION_MNIST_DIR
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    prefix = "train" if split == "train" else "t10k"
    images, labels = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
    if images.exists() and labels.exists():
        return read_idx(images), read_idx(labels).astype(np.int64)
    try:
        import datasets

        ds = datasets.load_dataset(FASHION_MNIST_HUB, split=split)
        return np.stack([np.asarray(im) for im in ds["image"]]), np.asarray(ds["label"], dtype=np.int64)
    except Exception as err:  # noqa: BLE001 - any failure of the fallback gets the same advice
        raise RuntimeError(
            f"Fashion-MNIST not found in {root} and the download of {FASHION_MNIST_HUB!r} failed ({err}). "
            "Install the Debian package: 'sudo apt-get install dataset-fashion-mnist' "
            "(or set LALORA_FASHION_MNIST to a folder with the idx files), or go online and "
            "'pip install datasets'."
        ) from err


def load_wordnet_glosses(path: Path | None = None) -> tuple[list[str], np.ndarray]:
    """Noun glosses (the definition, without the quoted examples) and their lexicographer file numbers."""
    path = path or WORDNET_NOUNS
    if not path.exists():
        raise RuntimeError(
            f"WordNet nouns not found at {path}. Install the Debian package: "
            "'sudo apt-get install wordnet-base' (or set LALORA_WORDNET_NOUNS to a data.noun file)."
        )
    glosses, lexfiles = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("  ") or "|" not in line:  # licence header
                continue
            fields, gloss = line.split("|", 1)
            definition = gloss.split('; "', 1)[0].strip().rstrip(";").strip()
            if definition:
                glosses.append(definition)
                lexfiles.append(int(fields.split()[1]))
    return glosses, np.asarray(lexfiles, dtype=np.int64)


def load_hub_images(name_or_path: str, split: str, image_key: str, label_key: str) -> tuple[list, np.ndarray]:
    """PIL images and labels of an image-classification dataset (hub name or ``save_to_disk`` folder)."""
    ds = _load_split(name_or_path, split)
    return list(ds[image_key]), np.asarray(ds[label_key], dtype=np.int64)


def load_hub_text(
    name_or_path: str, split: str, text_keys: tuple[str, ...], label_key: str, config: str | None = None
) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """Text tuples (one or two sentences) and labels, e.g. GLUE ``("question", "sentence")``."""
    ds = _load_split(name_or_path, split, config)
    return list(zip(*(ds[k] for k in text_keys))), np.asarray(ds[label_key], dtype=np.int64)


def _load_split(name_or_path: str, split: str, config: str | None = None):
    import datasets

    if Path(name_or_path).is_dir():
        loaded = datasets.load_from_disk(name_or_path)
        return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
    return datasets.load_dataset(name_or_path, config, split=split)
