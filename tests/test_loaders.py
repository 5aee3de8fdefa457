"""Data loaders on local stand-ins written in the real formats (idx, data.noun, save_to_disk)."""

import gzip

import numpy as np
import pytest

from lalora_lite.tasks import loaders


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fmnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return tmp_path


def test_fashion_mnist_idx_files(fmnist_dir):
    images, labels = loaders.load_fashion_mnist("train", fmnist_dir)
    assert images.shape == (40, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [i % 10 for i in range(40)]
    assert loaders.load_fashion_mnist("test", fmnist_dir)[0].shape == (20, 28, 28)
    with pytest.raises(ValueError, match="split must be"):
        loaders.load_fashion_mnist("validation", fmnist_dir)


def test_fashion_mnist_missing_everywhere_gives_advice(tmp_path, monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no internet")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RuntimeError, match="apt-get install dataset-fashion-mnist.*LALORA_FASHION_MNIST"):
        loaders.load_fashion_mnist("train", tmp_path)


def test_fashion_mnist_falls_back_to_the_hub(tmp_path, monkeypatch):
    import datasets
    from PIL import Image

    def fake_hub(name, split):
        assert name == loaders.FASHION_MNIST_HUB
        return {"image": [Image.new("L", (28, 28), color=7)] * 3, "label": [1, 2, 3]}

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    images, labels = loaders.load_fashion_mnist("test", tmp_path)
    assert images.shape == (3, 28, 28) and int(images[0, 0, 0]) == 7 and labels.tolist() == [1, 2, 3]


def test_wordnet_gloss_parser(tmp_path):
    noun = tmp_path / "data.noun"
    noun.write_text(
        "  1 This software and database is being provided to you, the LICENSEE, by  \n"
        "02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 000 | "
        'a member of the genus Canis; "the dog barked"  \n'
        "03001627 06 n 01 chair 0 000 | a seat for one person, with a support for the back  \n"
    )
    glosses, lexfiles = loaders.load_wordnet_glosses(noun)
    assert glosses == ["a member of the genus Canis", "a seat for one person, with a support for the back"]
    assert lexfiles.tolist() == [5, 6]
    with pytest.raises(RuntimeError, match="apt-get install wordnet-base"):
        loaders.load_wordnet_glosses(tmp_path / "missing")


def test_hub_loaders_read_save_to_disk_folders(tmp_path):
    import datasets
    from PIL import Image

    images = datasets.Dataset.from_dict({"img": [Image.new("RGB", (32, 32))] * 4, "fine_label": [0, 1, 2, 3]})
    datasets.DatasetDict({"train": images, "test": images}).save_to_disk(tmp_path / "cifar")
    pil, labels = loaders.load_hub_images(str(tmp_path / "cifar"), "test", "img", "fine_label")
    assert len(pil) == 4 and pil[0].size == (32, 32) and labels.tolist() == [0, 1, 2, 3]
    text = datasets.Dataset.from_dict({"question": ["q1", "q2"], "sentence": ["s1", "s2"], "label": [0, 1]})
    text.save_to_disk(tmp_path / "qnli")
    pairs, labels = loaders.load_hub_text(str(tmp_path / "qnli"), "train", ("question", "sentence"), "label")
    assert pairs == [("q1", "s1"), ("q2", "s2")] and labels.tolist() == [0, 1]
