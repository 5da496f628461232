"""The N-way K-shot episode sampler and the meta-train / val / test class split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from transferkit.data.datasets import ArrayDataset, Subset
from transferkit.errors import TransferkitError
from transferkit.meta.episodes import EpisodeSampler, check_disjoint, split_classes

CLASSES, PER_CLASS = 10, 6


def _data(per_class: int = PER_CLASS) -> ArrayDataset:
    """Image i is ``100 * i + [[0, 1, 2], [3, 4, 5], [6, 7, 8]]``, so its row is ``min // 100``."""
    n = CLASSES * per_class
    x = torch.arange(9.0).view(1, 1, 3, 3) + 100.0 * torch.arange(n).view(n, 1, 1, 1)
    y = np.arange(n) % CLASSES
    return ArrayDataset(x, y, name="toy")


def _rows(x: torch.Tensor) -> list[int]:
    return [int(v) // 100 for v in x.flatten(1).min(1).values]


def test_split_classes_is_disjoint_complete_and_reproducible():
    s = split_classes(range(CLASSES), (6, 2, 2), seed=3)
    assert [len(s[k]) for k in ("train", "val", "test")] == [6, 2, 2]
    assert sorted(s["train"] + s["val"] + s["test"]) == list(range(CLASSES))
    check_disjoint(s)
    assert split_classes(range(CLASSES), (6, 2, 2), seed=3) == s
    assert split_classes(range(CLASSES), (6, 2, 2), seed=4) != s


def test_split_classes_by_fractions():
    s = split_classes(range(CLASSES), (0.6, 0.2, 0.2), seed=0)
    assert [len(s[k]) for k in ("train", "val", "test")] == [6, 2, 2]


@pytest.mark.parametrize("sizes, words", [((0.5, 0.2, 0.2), "add up to 1"), ((8, 2, 2), "more than the 10"),
                                          ((1, 2), "three sizes")])
def test_split_classes_refuses_bad_sizes(sizes, words):
    with pytest.raises(TransferkitError, match=words):
        split_classes(range(CLASSES), sizes, seed=0)


def test_check_disjoint_names_the_shared_class():
    with pytest.raises(TransferkitError, match="meta-train and meta-test classes share class 3"):
        check_disjoint({"train": [1, 2, 3], "val": [4], "test": [3, 5]})


def test_episodes_never_mix_the_splits_classes():
    ds = _data()
    splits = split_classes(range(CLASSES), (6, 2, 2), seed=0)
    for split, n_way in (("train", 5), ("val", 2), ("test", 2)):
        sampler = EpisodeSampler(ds, splits[split], n_way=n_way, k_shot=2, q_queries=3, seed=1, name=split)
        for i in range(10):
            ep = sampler.episode(i)
            seen = {int(ds.targets[r]) for r in _rows(ep.support_x) + _rows(ep.query_x)}
            assert seen <= set(splits[split])
            assert {c for c, _ in ep.classes} <= set(splits[split])


def test_episode_shapes_relabelling_and_disjoint_support_and_query():
    ds = _data()
    ep = EpisodeSampler(ds, range(CLASSES), n_way=3, k_shot=2, q_queries=4, seed=0).episode(0)
    assert ep.support_x.shape == (6, 1, 3, 3) and ep.query_x.shape == (12, 1, 3, 3)
    assert ep.support_y.tolist() == [0, 0, 1, 1, 2, 2]
    assert ep.query_y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    support, query = _rows(ep.support_x), _rows(ep.query_x)
    assert not set(support) & set(query)
    for rows, labels in ((support, ep.support_y), (query, ep.query_y)):
        for r, j in zip(rows, labels.tolist()):  # episode label j is always the dataset class ep.classes[j]
            assert ds.targets[r] == ep.classes[j][0]


def test_episodes_are_reproducible_from_the_seed_and_differ_between_seeds():
    ds = _data()
    a = EpisodeSampler(ds, range(CLASSES), n_way=3, k_shot=1, q_queries=2, seed=7)
    b = EpisodeSampler(ds, range(CLASSES), n_way=3, k_shot=1, q_queries=2, seed=7)
    c = EpisodeSampler(ds, range(CLASSES), n_way=3, k_shot=1, q_queries=2, seed=8)
    later = b.episode(5)  # drawing out of order changes nothing
    assert torch.equal(a.episode(5).support_x, later.support_x) and torch.equal(a.episode(5).query_x, later.query_x)
    assert torch.equal(a.episode(0).query_x, b.episode(0).query_x)
    assert any(not torch.equal(a.episode(i).query_x, c.episode(i).query_x) for i in range(3))
    assert not torch.equal(a.episode(0).query_x, a.episode(1).query_x)


def test_meta_batch_stacks_consecutive_episodes():
    s = EpisodeSampler(_data(), range(CLASSES), n_way=2, k_shot=1, q_queries=2, seed=0)
    batch = s.batch(3, tasks=4)
    assert batch.support_x.shape == (4, 2, 1, 3, 3) and batch.query_y.shape == (4, 4)
    assert torch.equal(batch.query_x[2], s.episode(5).query_x)


def test_rotation_makes_four_classes_per_class_with_rotated_images():
    ds = _data()
    s = EpisodeSampler(ds, [0, 1, 2], n_way=12, k_shot=1, q_queries=1, rotations=True, seed=0)
    assert len(s.classes) == 12
    ep = s.episode(0)
    assert sorted(ep.classes) == [(c, r) for c in range(3) for r in range(4)]
    for j, (_, r) in enumerate(ep.classes):
        image = ep.support_x[j]
        original = ds[_rows(image[None])[0]][0]
        assert torch.equal(image, torch.rot90(original, r, dims=(-2, -1)))
    quarter = ep.support_x[[r for _, r in ep.classes].index(1)][0]  # 90 degrees counter-clockwise, by hand:
    assert (quarter - quarter.min()).tolist() == [[2, 5, 8], [1, 4, 7], [0, 3, 6]]


def test_works_on_a_subset_view():
    ds = Subset(_data(), np.arange(30))  # three examples of each class
    ep = EpisodeSampler(ds, range(CLASSES), n_way=4, k_shot=1, q_queries=2, seed=0).episode(0)
    assert ep.query_x.shape == (8, 1, 3, 3)


@pytest.mark.parametrize("kwargs, words", [
    (dict(n_way=11), "n_way=11 exceeds the 10 classes"),
    (dict(k_shot=4, q_queries=3), "class 0 has 6 examples, fewer than k_shot \\+ q_queries = 7"),
    (dict(k_shot=0), "'k_shot' must be an integer >= 1"),
    (dict(q_queries=0), "'q_queries' must be an integer >= 1"),
    (dict(n_way=1), "'n_way' must be an integer >= 2"),
    (dict(seed=-1), "'seed' must be an integer >= 0"),
])
def test_bad_episode_settings_are_refused_naming_the_input(kwargs, words):
    args = dict(n_way=5, k_shot=1, q_queries=1) | kwargs
    with pytest.raises(TransferkitError, match=words):
        EpisodeSampler(_data(), range(CLASSES), **args)


def test_rotation_of_vectors_and_multi_hot_targets_are_refused():
    vectors = ArrayDataset(np.random.default_rng(0).normal(size=(20, 4)), np.arange(20) % 2, name="vec")
    with pytest.raises(TransferkitError, match="rotation augmentation works on images"):
        EpisodeSampler(vectors, [0, 1], n_way=2, k_shot=1, q_queries=1, rotations=True)
    multi = ArrayDataset(np.zeros((4, 3)), np.eye(2)[[0, 1, 0, 1]], name="mh", task="multilabel")
    with pytest.raises(TransferkitError, match="class-index targets"):
        EpisodeSampler(multi, [0, 1], n_way=2, k_shot=1, q_queries=1)


def test_rotation_of_non_square_images_is_refused_naming_the_shape():
    wide = ArrayDataset(torch.zeros(8, 1, 3, 5), np.arange(8) % 2, name="wide")
    with pytest.raises(TransferkitError, match=r"rotations need square images.*\(1, 3, 5\).*data.image_size"):
        EpisodeSampler(wide, [0, 1], n_way=2, k_shot=1, q_queries=1, rotations=True)
    assert EpisodeSampler(wide, [0, 1], n_way=2, k_shot=1, q_queries=1).episode(0).support_x.shape == (2, 1, 3, 5)
