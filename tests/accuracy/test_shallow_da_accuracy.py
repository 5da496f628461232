"""Classic domain adaptation on the JDA paper's benchmarks (Long et al., ICCV 2013), through the code
of `transferkit adapt` (runs.classic): USPS<->MNIST with l2-normalised samples, Office-Caltech10
SURF (12 pairs) with JDA's row-sum + per-domain z-score; transductive, 1-NN on top.

Bars that can fail: the source-only 1-NN reproduces the paper's NN column to the hundredth; JDA
(k = 100, T = 10; digits: primal, lambda 0.1; SURF: linear kernel, lambda 1.0) is within 2 points
of the paper on every pair (measured: equal to the hundredth on all 14); skada's TCA and CORAL
built from the registry are at least what skada's own pipelines score with the same protocol
(measured with benchmarks/adapt/bench_classic.py: TCA 43.61 = the paper's TCA column; CORAL 34.36).
"""

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits

from tests.conftest import SHARED_DATA
from transferkit.adapt.shallow import SHALLOW
from transferkit.runs.classic import fit_predict, load_features, preprocess

pytestmark = pytest.mark.slow

SURF = {"C": "caltech", "A": "amazon", "W": "webcam", "D": "dslr"}
SURF_PAIRS = ["CA", "CW", "CD", "AC", "AW", "AD", "WC", "WA", "WD", "DC", "DA", "DW"]
# The JDA paper's Table 2 (NN and JDA columns); /work/shared/data/*/README.md lists the NN ones.
PAPER_NN = {"UM": 44.70, "MU": 65.94, "CA": 23.70, "CW": 25.76, "CD": 25.48, "AC": 26.00, "AW": 29.83, "AD": 25.48,
            "WC": 19.86, "WA": 22.96, "WD": 59.24, "DC": 26.27, "DA": 28.50, "DW": 63.39}
PAPER_JDA = {"UM": 59.65, "MU": 67.28, "CA": 44.78, "CW": 41.69, "CD": 45.22, "AC": 39.36, "AW": 37.97, "AD": 39.49,
             "WC": 31.17, "WA": 32.78, "WD": 89.17, "DC": 31.52, "DA": 33.09, "DW": 89.49}
SKADA_OWN = {"tca": 43.61, "coral": 34.36}  # SURF averages (of per-pair % to 2 decimals) of skada's own pipelines


@pytest.fixture(scope="module")
def pairs():
    if not SHARED_DATA.is_dir():
        pytest.fail(f"The benchmark data folder {SHARED_DATA} is missing; it must sit beside the repository.")

    def domain(spec, how):
        x, y, _ = load_features(spec)
        return preprocess(x, how), y

    data = {"U": domain("mnist_usps:usps", "l2"), "M": domain("mnist_usps:mnist", "l2")}
    data |= {k: domain(f"office_caltech10_surf:{v}", "zscore") for k, v in SURF.items()}
    return {s + t: (*data[s], *data[t]) for s, t in ["UM", "MU", *SURF_PAIRS]}


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(1):  # threads made the dense eigensolvers ~10x slower on a shared 2-core machine
        yield


def accuracy(pred, y) -> float:
    return round(100 * float(np.mean(pred == y)), 2)


def test_one_nn_reproduces_the_papers_baseline_on_all_14_pairs(pairs):
    got = {p: accuracy(KNeighborsClassifier(1).fit(xs, ys).predict(xt), yt) for p, (xs, ys, xt, yt) in pairs.items()}
    assert got == PAPER_NN


def jda_accuracies(pairs, names, **args):
    return {p: accuracy(fit_predict(SHALLOW.build("jda", **args), *pairs[p][:3]), pairs[p][3]) for p in names}


def test_jda_digits_within_2_points_of_the_paper(pairs):
    got = jda_accuracies(pairs, ["UM", "MU"], n_components=100, lam=0.1, kernel="primal", n_iter=10)
    assert all(got[p] >= PAPER_JDA[p] - 2 for p in got), got


def test_jda_surf_within_2_points_of_the_paper_on_every_pair(pairs):
    got = jda_accuracies(pairs, SURF_PAIRS, n_components=100, lam=1.0, kernel="linear", n_iter=10)
    assert all(got[p] >= PAPER_JDA[p] - 2 for p in got), got
    assert np.mean(list(got.values())) >= np.mean([PAPER_JDA[p] for p in SURF_PAIRS]) - 2  # paper: 46.31


@pytest.mark.parametrize("method, args", [("tca", {"kernel": "linear", "n_components": 100, "mu": 1.0}),
                                          ("coral", {})])
def test_skada_methods_from_the_registry_score_as_skadas_own_pipeline(pairs, method, args):
    pytest.importorskip("skada")
    got = [accuracy(fit_predict(SHALLOW.build(method, **args), *pairs[p][:3]), pairs[p][3]) for p in SURF_PAIRS]
    assert np.mean(got) >= SKADA_OWN[method] - 0.005, (method, got)
