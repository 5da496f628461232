"""The domain-adaptation report parts: feature map plot and domain-distance table."""

import numpy as np
import pytest
import sklearn.manifold  # noqa: F401  (imported here so that no test pays for it)
import torch
from threadpoolctl import threadpool_limits

from transferkit.errors import TransferkitError
from transferkit.report import write_html
from transferkit.report.adapt import domain_distance_table, embed_2d, feature_map_plot, markdown_table


@pytest.fixture(autouse=True)
def _one_openmp_thread():
    """t-SNE's OpenMP loop on a busy 2-core machine waits on its threads for seconds; one thread takes 0.1 s."""
    with threadpool_limits(1):
        yield


def _pair(shift, n=20, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n + 5, d)) + shift


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_feature_map_plot_writes_a_png(tmp_path, method):
    before, after = _pair(3.0), (torch.randn(20, 4), torch.randn(25, 4))  # the panels may differ in width
    classes = (np.arange(20) % 3, np.arange(25) % 3)
    path = feature_map_plot(before, after, tmp_path / "map.png", method=method, classes=classes, max_points=15,
                            max_iter=250)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_embed_2d_keeps_the_rows_and_separates_shifted_domains():
    src, tgt = _pair(10.0, n=30, d=60)  # wider than 50: PCA first
    xy = embed_2d(np.vstack([src, tgt]), "pca")
    assert xy.shape == (65, 2)
    assert abs(xy[:30, 0].mean() - xy[30:, 0].mean()) > 5 * xy[:30, 0].std()  # the shift is the first component
    assert embed_2d(np.vstack([src, tgt]), "tsne", max_iter=250).shape == (65, 2)


def test_feature_map_plot_rejects_wrong_shapes_before_drawing(tmp_path):
    src, tgt = _pair(0.0)
    with pytest.raises(TransferkitError, match="same width"):
        feature_map_plot((src, tgt[:, :3]), (src, tgt), tmp_path / "a.png")
    with pytest.raises(TransferkitError, match=r"\[N, D\] matrix"):
        feature_map_plot((src[:, 0], tgt), (src, tgt), tmp_path / "a.png")
    with pytest.raises(TransferkitError, match="a pair"):
        feature_map_plot(src, (src, tgt), tmp_path / "a.png")
    with pytest.raises(TransferkitError, match="one label per row"):
        feature_map_plot((src, tgt), (src, tgt), tmp_path / "a.png", classes=(np.zeros(3), np.zeros(25)))
    with pytest.raises(TransferkitError, match="'method'"):
        feature_map_plot((src, tgt), (src, tgt), tmp_path / "a.png", method="umap")
    assert not (tmp_path / "a.png").exists()


def test_domain_distance_table_formats_before_and_after(tmp_path):
    headers, rows = domain_distance_table([
        {"name": "dann", "mmd_before": 0.41234, "mmd_after": 0.1, "pad_before": 1.9, "pad_after": 0.85},
        {"name": "source only", "mmd_before": 0.41234, "pad_before": float("nan")}])
    assert headers == ["method", "MMD² before → after", "PAD before → after"]
    assert rows == [["dann", "0.412 → 0.100", "1.900 → 0.850"], ["source only", "0.412 → n/a", "n/a"]]
    md = markdown_table(headers, rows)
    assert md.splitlines()[1] == "|:---|---:|---:|" and "| dann | 0.412 → 0.100 | 1.900 → 0.850 |" in md
    page = write_html(tmp_path / "r.html", "t", "i", [("Domain distances", headers, rows)], [])
    assert "0.412 → 0.100" in page.read_text(encoding="utf-8")
    with pytest.raises(TransferkitError, match="'name'"):
        domain_distance_table([{"mmd_before": 1.0}])
