import json

import numpy as np
import pytest
from PIL import Image

from transferkit.data import (ArrayDataset, ImageFolderDataset, k_shot, label_fraction, load_dataset, load_rows,
                              load_text_file, make_splits, stratified_split)
from transferkit.errors import TransferkitError

Y = np.repeat(np.arange(4), 25)


def test_k_shot_takes_k_per_class_and_is_deterministic():
    a, b = k_shot(Y, 3, seed=1), k_shot(Y, 3, seed=1)
    assert np.array_equal(a, b)
    assert np.bincount(Y[a]).tolist() == [3, 3, 3, 3]
    assert not np.array_equal(a, k_shot(Y, 3, seed=2))


def test_k_shot_too_many_names_the_class():
    with pytest.raises(TransferkitError, match="Class 0 has only 25"):
        k_shot(Y, 30, seed=0)


def test_stratified_split_keeps_proportions_and_is_disjoint():
    kept, taken = stratified_split(Y, 0.2, seed=0)
    assert np.bincount(Y[taken]).tolist() == [5, 5, 5, 5]
    assert len(np.intersect1d(kept, taken)) == 0 and len(kept) + len(taken) == len(Y)


def test_label_fraction_is_stratified():
    idx = label_fraction(Y, 0.4, seed=0)
    assert np.bincount(Y[idx]).tolist() == [10, 10, 10, 10]


def test_make_splits_rest_protocol_uses_everything_once():
    sp = make_splits(Y, seed=0, val_fraction=0.1, test_fraction="rest", shots=2)
    assert len(sp.train) == 8
    all_idx = np.concatenate([sp.train, sp.val, sp.test])
    assert len(np.unique(all_idx)) == len(Y) == len(all_idx)


def test_array_dataset_rejects_nan_and_length_mismatch():
    with pytest.raises(TransferkitError, match="NaN"):
        ArrayDataset(np.array([[np.nan, 1.0]]), [0])
    with pytest.raises(TransferkitError, match="2 inputs but 1 labels"):
        ArrayDataset(np.zeros((2, 3)), [0])


def test_array_dataset_scales_uint8_images_and_adds_channel():
    ds = ArrayDataset(np.full((2, 4, 4), 255, dtype=np.uint8), [0, 1])
    assert ds.x.shape == (2, 1, 4, 4) and float(ds.x.max()) == 1.0 and ds.kind == "image"


def test_array_images_resize_to_image_size_and_vectors_do_not(tmp_path):
    x = np.zeros((3, 28, 28), dtype=np.uint8)
    x[:, 8:20, 12:16] = 255  # a bar in the middle survives the resize
    np.savez(tmp_path / "d.npz", x=x, y=[0, 1, 0])
    ds = load_dataset(str(tmp_path / "d.npz"), image_size=16)
    assert ds.x.shape == (3, 1, 16, 16) and 0.0 <= float(ds.x.min()) and float(ds.x.max()) <= 1.0
    assert float(ds.x[0, 0, 8, 8]) > 0.5 and float(ds.x[0, 0, 0, 0]) == 0.0
    vec = ArrayDataset(np.ones((2, 5), dtype=np.float32), [0, 1])
    assert vec.resize(16) is vec


def test_embedded_dataset_loads_without_data_dir(tmp_path):
    ds = load_dataset("mnist_usps:usps", data_root=tmp_path)  # embedded: the data dir is not used
    assert len(ds) == 1800 and ds.x.shape[1:] == (1, 16, 16)


def test_dataset_errors_name_the_input(tmp_path):
    with pytest.raises(TransferkitError, match="Did you mean 'mnist_usps'"):
        load_dataset("mnist_usp:usps")
    with pytest.raises(TransferkitError, match="no domain 'uspss'.*Did you mean 'usps'"):
        load_dataset("mnist_usps:uspss")
    with pytest.raises(TransferkitError, match="does not exist"):
        load_dataset(str(tmp_path / "missing.npz"))
    with pytest.raises(TransferkitError, match="set \\$TRANSFERKIT_DATA"):
        load_dataset("amazon_reviews:books", data_root=tmp_path)


def test_text_file_with_string_labels(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps({"text": t, "label": l}) for t, l in [("good", "pos"), ("bad", "neg")]))
    ds = load_text_file(path)
    assert ds.class_names == ["neg", "pos"] and ds.targets.tolist() == [1, 0]


def _write_images(root, classes, n=2):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(root / c / f"{i}.png")


def test_image_folder_loads_and_resizes(tmp_path):
    _write_images(tmp_path, ["cat", "dog"])
    ds = ImageFolderDataset(tmp_path, image_size=12, channels=1)
    x, y = ds[3]
    assert x.shape == (1, 12, 12) and y == 1 and ds.class_names == ["cat", "dog"]


def test_image_folder_corrupt_image_is_named(tmp_path):
    _write_images(tmp_path, ["cat", "dog"])
    (tmp_path / "dog" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(TransferkitError, match="'dog/broken.png' is not a readable image"):
        ImageFolderDataset(tmp_path)


def test_image_folder_empty_class_is_named(tmp_path):
    _write_images(tmp_path, ["cat"])
    (tmp_path / "dog").mkdir()
    with pytest.raises(TransferkitError, match="class folder 'dog' has no images"):
        ImageFolderDataset(tmp_path)


@pytest.mark.parametrize("kind", ["npz", "folder"])
def test_load_rows_equals_the_rows_of_the_whole_dataset(tmp_path, kind):
    """A sample read by load_rows is the same examples, resized and standardised, as those rows of
    load_dataset: arrays are cut before the per-example work, folders are read lazily."""
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, size=(12, 20, 20), dtype=np.uint8), np.arange(12) % 3
    if kind == "npz":
        spec = tmp_path / "d.npz"
        np.savez(spec, x=x, y=y)
    else:
        spec = tmp_path / "imgs"
        for i, (img, label) in enumerate(zip(x, y)):
            (spec / f"c{label}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(spec / f"c{label}" / f"{i}.png")
    pick = lambda n: np.array([n - 1, 0, 5])  # noqa: E731
    part, rows = load_rows(str(spec), pick, image_size=8, channels=1, preprocess="standardize")
    whole = load_dataset(str(spec), image_size=8, channels=1, preprocess="standardize")
    assert rows.tolist() == [11, 0, 5] and len(part) == 3
    for i, r in enumerate(rows):
        assert np.allclose(part[i][0].numpy(), whole[int(r)][0].numpy(), atol=1e-5)
        assert int(part[i][1]) == int(whole[int(r)][1])
    assert part.targets.tolist() == np.asarray(whole.targets)[rows].tolist()


def test_load_rows_checks_the_sampled_rows_and_names_them(tmp_path):
    x = np.zeros((6, 4), dtype=np.float32)
    x[4, 1] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(6) % 2)
    part, rows = load_rows(str(tmp_path / "d.npz"), lambda n: np.array([0, 2]))
    assert len(part) == 2 and rows.tolist() == [0, 2]
    with pytest.raises(TransferkitError, match=r"rows sampled from '.*d\.npz': x\[1\] contains NaN"):
        load_rows(str(tmp_path / "d.npz"), lambda n: np.array([0, 4]))
