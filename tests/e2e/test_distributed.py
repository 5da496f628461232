"""Several processes (DDP through Accelerate, gloo on the CPU): `transferkit train --processes 2`, a
resume under another process count and two torchrun agents as two "nodes" end with the weights of one
process trained on the same global batches."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import tiny_config
from transferkit import train



def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "transferkit", *map(str, args)], capture_output=True, text=True,
                          env=os.environ | {"COLUMNS": "200"}, timeout=timeout)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    """The tiny problem of tests/conftest.py (78 training rows) in batches of 5: two processes take 3
    and 2 rows of each batch, 2 and 1 of the last."""
    root = tmp_path_factory.mktemp("ddp")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 40)
    np.savez(root / "tiny.npz", x=rng.normal(size=(120, 8)).astype(np.float32) + 2.0 * np.eye(3, 8)[y], y=y)
    path = root / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_config(root / "tiny.npz", batch_size=5)))
    return path


@pytest.fixture(scope="module")
def one_process(config_file):
    """The weights of the run in one process."""
    out = config_file.parent / "one"
    r = cli("train", config_file, "--out", out)
    assert r.returncode == 0, r.stderr
    return load_file(out / "model.safetensors")


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5, msg=k)


@pytest.mark.slow
def test_two_processes_end_with_the_weights_of_one(config_file, one_process, tmp_path):
    out = tmp_path / "two"
    r = cli("train", config_file, "--out", out, "--processes", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("Run written to") == 1  # the first process reports, alone
    assert_same_weights(one_process, load_file(out / "model.safetensors"))
    one, two = ((d / "metrics.jsonl").read_text().splitlines() for d in (config_file.parent / "one", out))
    assert len(two) == len(one) == 4  # one line per epoch, written by one process
    assert {"summary.json", "report.html", "config.yaml", "checkpoints"} <= set(os.listdir(out))


@pytest.mark.slow
def test_a_run_stopped_in_one_process_resumes_in_two(config_file, one_process, tmp_path):
    out = tmp_path / "resumed"

    def stop(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config_file, out=out, progress=False, callbacks=[stop])
    r = cli("train", config_file, "--out", out, "--resume", "--processes", "2")
    assert r.returncode == 0, r.stderr
    assert_same_weights(one_process, load_file(out / "model.safetensors"))


@pytest.mark.slow
def test_two_torchrun_agents_as_two_nodes_end_with_the_weights_of_one(config_file, one_process, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "nodes"
    agent = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d",
             f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=transferkit-test", "-m", "transferkit",
             "train", str(config_file), "--out", str(out)]
    agents = [subprocess.Popen(agent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [a.communicate(timeout=300) for a in agents]
    assert all(a.returncode == 0 for a in agents), [o[1][-2000:] for o in outputs]
    assert sum(o[0].count("Run written to") for o in outputs) == 1
    assert_same_weights(one_process, load_file(out / "model.safetensors"))


def test_processes_refuse_an_unchecked_strategy_in_one_sentence(config_file, tmp_path):
    out = tmp_path / "refused"
    r = cli("train", config_file, "--out", out, "--processes", "2", "--set", "strategy.name=full+bss")
    assert r.returncode == 2 and "Strategy 'full+bss' is not checked under several processes" in r.stderr
    assert "train it in one process" in r.stderr and not out.exists()
    r = cli("train", config_file, "--out", out, "--processes", "2", "--guard")
    assert r.returncode == 2 and "--guard trains its baselines in one process" in r.stderr and not out.exists()


def ddp_cases(out, *launcher):
    """Run tests/e2e/ddp_cases.py (one process, or under ``launcher``'s processes) into ``out``."""
    out.mkdir()
    script = os.path.join(os.path.dirname(__file__), "ddp_cases.py")
    return subprocess.run([*launcher, script, str(out)] if launcher else [sys.executable, script, str(out)],
                          capture_output=True, text=True, timeout=300, env=os.environ | {"OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def one_process_cases(tmp_path_factory):
    out = tmp_path_factory.mktemp("cases") / "one"
    r = ddp_cases(out)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def assert_same_cases(one, several) -> None:
    names = sorted(os.listdir(one))
    assert len(names) == 17 and sorted(os.listdir(several)) == names  # 3 + 7 adaptation methods + 5 weighters + 2 streams
    for name in names:
        a, b = load_file(one / name), load_file(several / name)
        assert a.keys() == b.keys(), name
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5, msg=f"{name}: {k}")


@pytest.mark.slow
def test_domain_adaptation_multitask_weighters_and_ewc_train_in_two_processes_as_in_one(one_process_cases, tmp_path):
    """Each domain-adaptation method (terms of the gathered batch; DANN's discriminator averaged), the
    checked multi-task weighters (PCGrad, CAGrad and IMTL-G from the whole batch's per-task gradients)
    and EWC on a two-task stream end with the one-process weights, with uneven shares of each batch."""
    r = ddp_cases(tmp_path / "two", sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_cases(one_process_cases, tmp_path / "two")


@pytest.mark.slow
def test_two_torchrun_agents_train_every_family_as_one_process(one_process_cases, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "nodes").mkdir()
    script = os.path.join(os.path.dirname(__file__), "ddp_cases.py")
    agent = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d",
             f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=transferkit-cases", script, str(tmp_path / "nodes")]
    agents = [subprocess.Popen(agent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=os.environ | {"OMP_NUM_THREADS": "1"}) for _ in range(2)]
    outputs = [a.communicate(timeout=300) for a in agents]
    assert all(a.returncode == 0 for a in agents), [o[1][-2000:] for o in outputs]
    assert_same_cases(one_process_cases, tmp_path / "nodes")


@pytest.mark.slow
def test_continual_and_multitask_commands_take_processes(tmp_path):
    """`continual --processes 2` (EWC, naive compared) and `multitask --processes 2` (PCGrad) write
    one run directory, reported once, whose results equal the one-process run's."""
    rng = np.random.default_rng(0)
    y = np.arange(120) % 4
    x = (rng.normal(size=(120, 8)) + 2.0 * np.eye(4, 8)[y]).astype(np.float32)
    np.savez(tmp_path / "four.npz", x=x, y=y)
    model = {"backbone": "mlp", "backbone_args": {"in_features": 8, "hidden": [16]}}
    train_args = {"epochs": 2, "batch_size": 7, "lr": 0.05, "optimizer": "sgd", "device": "cpu"}
    continual = {"stream": {"kind": "split_classes", "dataset": str(tmp_path / "four.npz"), "classes_per_task": 2},
                 "model": model, "strategy": {"name": "ewc", "args": {"weight": 50.0}}, "train": train_args,
                 "compare": {"strategies": ["naive"]}}
    (tmp_path / "continual.yaml").write_text(yaml.safe_dump(continual))
    data_dir = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")
    if not os.path.isdir(os.path.join(data_dir, "mnist")):
        pytest.skip("MultiMNIST needs ../shared/data/mnist")
    multitask = {"data": {"kind": "multimnist", "train_size": 147, "test_size": 50, "val_fraction": 0.1,
                          "data_dir": data_dir},
                 "model": {"backbone": "mlp", "backbone_args": {"in_features": 784, "hidden": [16]}},
                 "weighter": {"name": "pcgrad"}, "single_task": False, "seeds": 1, "train": train_args}
    (tmp_path / "multitask.yaml").write_text(yaml.safe_dump(multitask))
    for command, results in [("continual", "results.json"), ("multitask", "results.csv")]:
        one, two = tmp_path / f"{command}-one", tmp_path / f"{command}-two"
        r1 = cli(command, tmp_path / f"{command}.yaml", "--out", one)
        assert r1.returncode == 0, r1.stderr[-3000:]
        r2 = cli(command, tmp_path / f"{command}.yaml", "--out", two, "--processes", "2")
        assert r2.returncode == 0, r2.stderr[-3000:]
        assert r2.stdout.count("Run written to") == 1
        a, b = ((d / results).read_text() for d in (one, two))
        if command == "continual":  # the accuracy matrices of EWC and of the compared naive run (not the seconds)
            for part in (".", "compare/naive"):
                a, b = (json.loads((d / part / results).read_text())["matrices"] for d in (one, two))
                assert a == b
        else:
            (head_a, *rows_a), (head_b, *rows_b) = ([line.split(",") for line in t.splitlines()] for t in (a, b))
            assert head_a == head_b and len(rows_a) == len(rows_b) == 1
            for ra, rb in zip(rows_a, rows_b):  # every test metric (not the seconds)
                assert ra[:3] == rb[:3] and [float(v) for v in ra[4:]] == pytest.approx([float(v) for v in rb[4:]], abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fomaml", "protonet"])
def test_meta_takes_processes_with_the_one_process_weights(method, tmp_path):
    """`meta --processes 2`: the meta-batch's 3 episodes shared 2/1 (uneven, weighted), the gradients
    averaged; the parameters equal the one-process run's to 1e-5 (measured: 1e-7; BatchNorm's running
    statistics are process 0's own, so buffers are not compared)."""
    rng = np.random.default_rng(0)
    protos = rng.random((12, 16, 16)) > 0.5
    x = np.concatenate([np.where(rng.random((8, 16, 16)) < 0.1, ~p, p) for p in protos]).astype(np.uint8) * 255
    np.savez(tmp_path / "tiny.npz", x=x, y=np.repeat(np.arange(12), 8))
    cfg = {"data": {"dataset": str(tmp_path / "tiny.npz"), "split": [6, 3, 3], "n_way": 3, "k_shot": 1, "q_queries": 2},
           "model": {"backbone_args": {"width": 8}}, "method": {"name": method, "meta_batch": 3, "inner_lr": 0.1},
           "train": {"iterations": 4, "eval_every": 2, "val_episodes": 4, "test_episodes": 10, "device": "cpu"}}
    (tmp_path / "meta.yaml").write_text(yaml.safe_dump(cfg))
    r1 = cli("meta", tmp_path / "meta.yaml", "--out", tmp_path / "one")
    assert r1.returncode == 0, r1.stderr[-3000:]
    r2 = cli("meta", tmp_path / "meta.yaml", "--out", tmp_path / "two", "--processes", "2")
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert r2.stdout.count("Run written to") == 1
    a, b = (load_file(tmp_path / d / "model.safetensors") for d in ("one", "two"))
    params = [k for k in a if "running_" not in k and "num_batches" not in k]
    assert params and a.keys() == b.keys()
    if method == "protonet":  # the last BatchNorm's shift moves a unit active on every row alike, which leaves
        # Euclidean distances as they are: its gradient is rounding noise here, which Adam scales to lr-sized steps
        params.remove("model.backbone.blocks.3.1.bias")
    for k in params:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5, msg=lambda m, k=k: f"{k}: {m}")
    metrics = [(tmp_path / d / "metrics.jsonl").read_text().splitlines() for d in ("one", "two")]
    assert len(metrics[0]) == len(metrics[1]) == 2  # written once per validation, by one process


def test_meta_processes_refuse_reptile_and_a_small_meta_batch(tmp_path):
    (tmp_path / "tiny.npz").write_bytes(b"")  # refused before any data is read
    cfg = {"data": {"dataset": str(tmp_path / "tiny.npz")}, "method": {"name": "reptile", "inner_steps": 2}}
    (tmp_path / "meta.yaml").write_text(yaml.safe_dump(cfg))
    r = cli("meta", tmp_path / "meta.yaml", "--out", tmp_path / "r", "--processes", "2")
    assert r.returncode == 2 and "Reptile steps the weights within each task" in r.stderr, r.stderr
    r = cli("meta", tmp_path / "meta.yaml", "--out", tmp_path / "r", "--processes", "2", "--set", "method.name=maml")
    assert r.returncode == 2 and "method.meta_batch 1 is smaller than the 2 processes" in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()
