"""``gradbridge train``: the tutorial's regression by gradient descent, or a linear fit to a CSV.

With no ``--data`` it reproduces the tutorial (seed-42 data, w = b = 0, lr 0.1, 50 epochs,
the loss printed every 10 epochs). ``--data FILE.csv`` fits a multivariate linear model whose
target is the file's last column. ``--json`` prints one JSON object for machines.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("train", help="train a linear model by gradient descent")
    parser.add_argument("--backend", help="numpy, jax or torch (default: the resolved choice)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N, gpu or auto")
    parser.add_argument("--dtype", help="float32 or float64")
    parser.add_argument("--epochs", type=int, default=50, help="passes over the data (50)")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate (0.1)")
    parser.add_argument("--n", type=int, default=None,
                        help="number of tutorial data points (100); not with --data")
    parser.add_argument("--seed", type=int, default=42,
                        help="seed of the tutorial data and of mini-batch orders (42)")
    parser.add_argument("--data", metavar="FILE.csv",
                        help="fit a linear model to this CSV (last column is the target)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="mini-batch size (default: the full batch, as the tutorial)")
    parser.add_argument("--parallel", metavar="data", default=None,
                        help="split every batch over devices (jax) or launched processes "
                             "(torch, under gradbridge launch or torchrun)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from gradbridge.config import get_backend
    from gradbridge.core import data, losses, models
    from gradbridge.core.backend import invalid
    from gradbridge.core.callbacks import log_every
    from gradbridge.core.parallel import is_main_process
    from gradbridge.core.train import fit
    from gradbridge.experiments.seed import SEED, run_regression

    be = get_backend(args.backend, device=args.device, dtype=args.dtype)
    # The tutorial prints every 10 of its 50 epochs; longer runs print about 5 lines.
    every = max(SEED["log_every"], args.epochs // 5)
    main = is_main_process()  # under a launcher only rank 0 prints
    callbacks = () if args.json or not main else (log_every(every),)
    if args.data is None:
        n = 100 if args.n is None else data.check_count("--n", args.n)
        data.check_sample_memory("--n", n, 2)  # before the tutorial's x and y are drawn
        history = run_regression(be, epochs=args.epochs, lr=args.lr, n=n, seed=args.seed,
                                 batch_size=args.batch_size, callbacks=callbacks,
                                 parallel=args.parallel)
        w: Any = float(history.params["w"])
    else:
        if args.n is not None:
            raise invalid("--n", args.n, "no value with --data (the CSV gives the samples)")
        x, y = data.load_csv(args.data)
        history = fit(models.linear, losses.mse, models.init_linear(x.shape[1]), x, y,
                      backend=be, lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                      seed=args.seed, callbacks=callbacks, parallel=args.parallel)
        w = [float(v) for v in history.params["w"]]
    b = float(history.params["b"])
    if not main:
        return 0
    timing = {"compile_s": history.compile_s, "run_s": history.run_s,
              "per_epoch_s": history.per_epoch_s}
    if args.json:
        print(json.dumps({
            "backend": history.backend, "device": history.device, "dtype": history.dtype,
            "epochs": history.epochs, "params": {"w": w, "b": b}, "losses": history.losses,
            "final_loss": history.final_loss, "timing": timing,
            "devices": history.devices, "processes": history.processes,
            "world_size": history.world_size,
        }))
        return 0
    if isinstance(w, float):
        print(f"learned line: y = {w:.2f}*x + {b:.2f}   (the data were made with y = 3x + 2)")
    else:
        terms = " + ".join(f"{v:.4g}*x{i}" for i, v in enumerate(w))
        print(f"learned model: y = {terms} + {b:.4g}")
    print(f"final loss {history.final_loss:.6g} after {history.epochs} epochs on "
          f"{history.backend} ({history.device}, {history.dtype}); "
          f"{history.per_epoch_s * 1e6:.1f} µs per epoch, compile {history.compile_s:.3f} s")
    return 0
