"""FedAvg, FedProx and differential privacy on USPS with label skew, from a small CNN trained on MNIST.

Each variant is `transferkit federated examples/federated/usps_fedavg.yaml` with `--set` overrides, run
through the CLI as a user would (Flower's simulation engine, 5 clients, Dirichlet alpha 0.5, head only,
20 rounds of 2 local epochs), for each split seed (`data.seed`: the global test rows and the clients'
shares). Every run also trains its centralised upper bound and local-only lower bound. One line per run
goes to the results file, with the command that produced it. The source model is trained first if
`runs/mnist_source` does not exist (examples/mnist_source.yaml).

    TRANSFERKIT_DATA=../shared/data python benchmarks/bench_federated.py [--seeds 3] [--variants fedavg,fedprox]
        [--out benchmarks/results/federated_usps.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CONFIG = "examples/federated/usps_fedavg.yaml"
SOURCE = Path("runs/mnist_source")
VARIANTS = {
    "fedavg": [],
    "fedprox_mu0.01": ["federated.strategy=fedprox", "federated.proximal_mu=0.01"],
    "fedprox_mu0.1": ["federated.strategy=fedprox", "federated.proximal_mu=0.1"],
    "fedavg_clip1_z0": ["federated.dp.noise_multiplier=0.0", "federated.dp.clipping_norm=1.0"],  # clipping alone
    "fedavg_dp_z0.5": ["federated.dp.noise_multiplier=0.5", "federated.dp.clipping_norm=1.0"],
    "fedavg_dp_client_z0.5": ["federated.dp.noise_multiplier=0.5", "federated.dp.clipping_norm=1.0",
                              "federated.dp.side=client"],
    "fedavg_dp_z1": ["federated.dp.noise_multiplier=1.0", "federated.dp.clipping_norm=1.0"],
    "fedavg_dp_z2": ["federated.dp.noise_multiplier=2.0", "federated.dp.clipping_norm=1.0"],
    # stronger label skew: each client holds few classes
    "fedavg_alpha0.1": ["federated.alpha=0.1"],
    "fedprox_mu0.1_alpha0.1": ["federated.alpha=0.1", "federated.strategy=fedprox", "federated.proximal_mu=0.1"],
}


def command(out: Path, overrides: list[str]) -> list[str]:
    sets = [a for o in overrides for a in ("--set", o)]
    return ["transferkit", "federated", CONFIG, "--out", str(out), "--overwrite", *sets]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))  # names from VARIANTS, comma-separated
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/federated_usps.jsonl"))
    args = ap.parse_args()
    env = os.environ | {"OMP_NUM_THREADS": "1", "FLWR_TELEMETRY_ENABLED": "0"}
    if not (SOURCE / "model.safetensors").is_file():
        subprocess.run([sys.executable, "-m", "transferkit.cli", "train", "examples/mnist_source.yaml", "--out",
                        str(SOURCE)], check=True, env=env)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants.split(","):
            for seed in range(args.seeds):
                overrides = VARIANTS[name] + [f"data.seed={seed}"]
                cmd = command(Path(tmp) / "run", overrides)
                r = subprocess.run([sys.executable, "-m", "transferkit.cli", *cmd[1:]], capture_output=True, text=True,
                                   env=env)
                if r.returncode:
                    raise SystemExit(r.stderr[-3000:])
                s = json.loads((Path(tmp) / "run" / "summary.json").read_text())
                row = {"variant": name, "seed": seed, "command": shlex.join(cmd).replace(str(Path(tmp) / "run"), "runs/fed"),
                       **{k: s[k] for k in ("test/accuracy", "centralised/accuracy", "local_only/mean_accuracy",
                                            "local_only/accuracy", "gap_to_centralised", "beats_local_only",
                                            "exchanged_bytes", "model_bytes", "bytes_fraction", "label_skew",
                                            "federated_seconds", "accuracy_per_round")}}
                rows.append(row)
                with open(args.out, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(f"{name} seed {seed}: federated {100 * s['test/accuracy']:.2f}, centralised "
                      f"{100 * s['centralised/accuracy']:.2f}, local-only mean {100 * s['local_only/mean_accuracy']:.2f}",
                      flush=True)
    print("\n| variant | federated | centralised | local-only (mean) | gap to centralised |")
    print("| --- | --- | --- | --- | --- |")
    for name in dict.fromkeys(r["variant"] for r in rows):
        sel = [r for r in rows if r["variant"] == name]

        def ms(key: str) -> str:
            v = 100 * np.array([r[key] for r in sel])
            return f"{v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.2f}"

        print(f"| {name} | {ms('test/accuracy')} | {ms('centralised/accuracy')} | {ms('local_only/mean_accuracy')} | "
              f"{ms('gap_to_centralised')} |")


if __name__ == "__main__":
    main()
