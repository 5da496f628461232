"""`transferkit compare` grids: on Ray (one task per cell) with the tables of a serial run, and --resume after
the driver was killed, which trains only the cells that had not finished."""

import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from rich.console import Console

from tests.conftest import tiny_config
from transferkit import train
from transferkit.compare import compare
from transferkit.errors import TransferkitError
from transferkit.runs.executors import INSTALL_RAY

GRID = ["--strategies", "full", "--shots", "2,5", "--seeds", "2"]  # 12 cells: scratch, full, source-only x 2 x 2


def cli(*args, timeout=300):
    # one thread per process, as in every Ray task, so that the serial run's sums are the same
    env = os.environ | {"COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "transferkit", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    """The tiny problem of tests/conftest.py, from the weights of a run on it (so source-only applies)."""
    root = tmp_path_factory.mktemp("grid")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    np.savez(root / "tiny.npz", x=rng.normal(size=(120, 8)).astype(np.float32) + 2.0 * np.eye(3, 8)[y], y=y)
    train(tiny_config(root / "tiny.npz", epochs=2), out=root / "source")
    path = root / "cfg.yaml"
    cfg = tiny_config(root / "tiny.npz", epochs=3)
    cfg["model"] |= {"weights": str(root / "source" / "model.safetensors"), "source_head": True}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def serial_run(config_file):
    out = config_file.parent / "serial"
    r = cli("compare", config_file, *GRID, "--out", out)
    assert r.returncode == 0, r.stderr
    return out


def table(path: Path) -> list[dict]:
    """results.csv without the one column that measures wall time."""
    with open(path / "results.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k != "train_seconds"} for row in csv.DictReader(f)]


def files(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file of a run directory: (modification time, inode)."""
    return {str(p.relative_to(run_dir)): (p.stat().st_mtime_ns, p.stat().st_ino)
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def cells(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.glob("*/*/seed*/config.yaml"))


@pytest.mark.slow
def test_a_grid_on_ray_gives_the_tables_of_a_serial_run(config_file, serial_run, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    r = cli("compare", config_file, *GRID, "--out", out, "--executor", "ray", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert len(cells(out)) == len(cells(serial_run)) == 12 and (out / "source_only" / "k5" / "seed1").is_dir()
    assert table(out) == table(serial_run)
    assert [x["strategy"] for x in table(out)] == ["scratch", "full", "source_only"] * 2


@pytest.mark.slow
def test_resume_after_the_driver_was_killed_trains_only_the_unfinished_cells(config_file, serial_run, tmp_path):
    """A serial driver killed (SIGKILL) once a cell has finished; the grid resumed on Ray keeps those cells'
    files untouched and ends with the tables of the uninterrupted run."""
    pytest.importorskip("ray")
    out = tmp_path / "killed"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "transferkit", "compare", str(config_file), *GRID,
                               "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while not list(out.glob("*/*/seed*/summary.json")) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    finished = sorted(p.parent for p in out.glob("*/*/seed*/summary.json"))
    assert finished and len(finished) < 12, "the driver was to be killed mid-grid"
    before = {d: files(d) for d in finished}
    r = cli("compare", config_file, *GRID, "--out", out, "--resume", "--executor", "ray", "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert {d: files(d) for d in finished} == before  # not trained again, not rewritten
    assert len(list(out.glob("*/*/seed*/summary.json"))) == 12
    assert r.stdout.count("finished before, kept") == len(finished)
    assert table(out) == table(serial_run)


def test_resume_retrains_only_cells_without_a_summary(tiny_npz, tmp_path):
    """Serial, in this process: a cell without summary.json (its run cut short) and a missing cell are trained
    again, the others read back; the tables are the same."""
    cfg = tiny_config(tiny_npz, epochs=1)
    quiet = Console(file=io.StringIO())
    out = tmp_path / "c"
    compare(cfg, ["full"], [2], 2, out, console=quiet)
    first = table(out)
    (out / "full" / "k2" / "seed1" / "summary.json").unlink()
    (out / "full" / "k2" / "seed1" / "model.safetensors").unlink()
    cut = files(out / "full" / "k2" / "seed1")
    kept = [out / "scratch" / "k2" / "seed0", out / "scratch" / "k2" / "seed1"]
    before = {d: files(d) for d in kept}
    shutil.rmtree(out / "full" / "k2" / "seed0")
    log = io.StringIO()
    compare(cfg, ["full"], [2], 2, out, console=Console(file=log, width=200), resume=True)
    assert {d: files(d) for d in kept} == before
    assert all((out / "full" / "k2" / f"seed{s}" / "summary.json").is_file() for s in (0, 1))
    assert files(out / "full" / "k2" / "seed1")["config.yaml"] != cut["config.yaml"]  # written afresh
    assert log.getvalue().count("finished before, kept") == 2
    assert table(out) == first


def test_compare_refuses_what_it_cannot_resume_before_writing(tiny_npz, tmp_path):
    cfg = tiny_config(tiny_npz, epochs=1)
    quiet = Console(file=io.StringIO())
    with pytest.raises(TransferkitError, match=r"Cannot resume '.*nowhere': it is not a comparison directory"):
        compare(cfg, ["full"], [2], 1, tmp_path / "nowhere", console=quiet, resume=True)
    assert not (tmp_path / "nowhere").exists()
    out = tmp_path / "c"
    compare(cfg, ["full"], [2], 1, out, console=quiet)
    with pytest.raises(TransferkitError, match="already exists; pass --resume to go on with that comparison, "
                                               "--overwrite to replace it"):
        compare(cfg, ["full"], [2], 1, out, console=quiet)
    with pytest.raises(TransferkitError, match="with another config, strategies, shots or seeds"):
        compare(cfg, ["full"], [2], 2, out, console=quiet, resume=True)
    with pytest.raises(TransferkitError, match="--resume goes on with .* and --overwrite replaces it; pass one"):
        compare(cfg, ["full"], [2], 1, out, console=quiet, resume=True, overwrite=True)
    with pytest.raises(TransferkitError, match="Unknown executor 'rya'. Did you mean 'ray'"):
        compare(cfg, ["full"], [2], 1, tmp_path / "d", console=quiet, executor="rya")
    with pytest.raises(TransferkitError, match="add --executor ray or leave --workers out"):
        compare(cfg, ["full"], [2], 1, tmp_path / "d", console=quiet, workers=2)
    assert not (tmp_path / "d").exists()


def test_executor_ray_without_ray_is_one_sentence_and_writes_nothing(tiny_npz, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed: `import ray` fails
    with pytest.raises(TransferkitError) as e:
        compare(tiny_config(tiny_npz, epochs=1), ["full"], [2], 1, tmp_path / "c", executor="ray")
    assert str(e.value) == INSTALL_RAY == ("--executor ray needs Ray; install it with `pip install 'transferkit[ray]'` "
                                           "(or run without --executor ray).")
    assert not (tmp_path / "c").exists()


def test_the_command_reports_missing_ray_in_one_line(tiny_npz, tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_npz, epochs=1)))
    code = ("import sys; sys.modules['ray'] = None; from transferkit.cli import main; "
            f"sys.argv = ['transferkit', 'compare', {str(path)!r}, '--out', {str(tmp_path / 'c')!r}, "
            "'--executor', 'ray']; main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=os.environ | {"COLUMNS": "200"})
    assert r.returncode == 2 and r.stderr.strip() == f"Error: {INSTALL_RAY}", r.stderr
    assert not (tmp_path / "c").exists()
