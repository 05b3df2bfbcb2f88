"""`mnist-bench-data`: fetch, verify, describe and look at a dataset."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.data.catalog import DATASETS, DataError, dataset_info
from bench.data.loader import holds_dataset, load, locate, verify_dir


def cmd_fetch(args: argparse.Namespace) -> int:
    path = locate(args.dataset, args.data_dir, download=True, mirrors=args.mirror)
    print(f"{args.dataset}: {path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    directory = Path(args.data_dir) if args.data_dir else locate(args.dataset, download=False)
    directory = holds_dataset(directory, dataset_info(args.dataset)) or directory
    problems = verify_dir(directory, args.dataset)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(f"{args.dataset}: {directory}: all 4 files valid (sha256, header, sizes, labels)")
    return 1 if problems else 0


def cmd_info(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    ds = load(args.dataset, args.data_dir, download=not args.no_download)
    seconds = time.perf_counter() - start
    print(f"dataset: {ds.name}\nsource:  {ds.source}\ndigest:  {ds.digest}")
    print(f"loaded in {seconds:.3f} s")
    names = DATASETS[ds.name].class_names
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        counts = np.bincount(y, minlength=10)
        print(
            f"{split}: images {x.shape} {x.dtype}, labels {y.shape}, "
            f"pixels {x.min()}..{x.max()} (mean {x.mean():.1f})"
        )
        print("  classes: " + ", ".join(f"{n}={c}" for n, c in zip(names, counts)))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = load(args.dataset, args.data_dir, download=not args.no_download)
    x, y = (ds.x_train, ds.y_train) if args.split == "train" else (ds.x_test, ds.y_test)
    rows, cols = args.rows, args.cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.3))
    names = DATASETS[ds.name].class_names
    for i, ax in enumerate(np.ravel(axes)):
        ax.imshow(x[i], cmap="gray_r")
        ax.set_title(names[y[i]], fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{ds.name} {args.split}: first {rows * cols} images")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mnist-bench-data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--dataset", default="mnist", choices=sorted(DATASETS))
        p.add_argument("--data-dir", help="folder with the IDX files (or with mnist/ in it)")
        p.set_defaults(func=func)
        return p

    fetch = add("fetch", cmd_fetch, "download a dataset into the cache (if not found)")
    fetch.add_argument("--mirror", action="append", help="base URL to download from")
    add("verify", cmd_verify, "check every file of a folder; exit 1 with the reasons")
    for name, func, text in (
        ("info", cmd_info, "shapes, class balance, pixel range, source"),
        ("show", cmd_show, "write a PNG grid of sample images"),
    ):
        p = add(name, func, text)
        p.add_argument("--no-download", action="store_true")
    show = sub.choices["show"]
    show.add_argument("--split", default="train", choices=["train", "test"])
    show.add_argument("--rows", type=int, default=4)
    show.add_argument("--cols", type=int, default=8)
    show.add_argument("--out", default="samples.png")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
