"""`mnist-bench-data`: fetch, verify, describe and look at a dataset."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.data.catalog import DATASETS, DataError, dataset_info
from bench.data.loader import holds_dataset, load, locate, verify_dir

MAX_GRID = 16  # rows and columns of `show`: 16 x 16 already takes ~12 s to draw


class UsageError(Exception):
    """A bad argument that parsing alone cannot catch; its message is one line."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument costs one line (with where to look), not the usage text."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def grid_size(text: str) -> int:
    """An argparse type: a grid side of 1..16 images."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 1 <= value <= MAX_GRID:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; allowed 1..{MAX_GRID}")
    return value


def folder(text: str) -> str:
    """An argparse type: a folder name that is not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is empty; give a folder with the IDX files")
    return text


def image_formats() -> list[str]:
    """The file types matplotlib can write, for `show --out`."""
    from matplotlib.figure import Figure

    return sorted(Figure().canvas.get_supported_filetypes())


def check_out(out: str) -> tuple[Path, str]:
    """(path, format) of a writable image file, checked before the slow part starts."""
    path = Path(out).expanduser()
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in image_formats():
        allowed = ", ".join(f".{f}" for f in image_formats())
        raise UsageError(f"--out {out!r} must end in an image suffix; allowed: {allowed}")
    if not path.parent.is_dir():
        problem = "is not a folder" if path.parent.exists() else "does not exist"
        raise UsageError(f"--out {out}: {path.parent} {problem}")
    if path.exists() and not path.is_file():
        raise UsageError(f"--out {out} exists and is not a regular file; give a file path")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: folder {path.parent} is not writable")
    return path, fmt


def write_atomic(path: Path, write) -> None:
    """Write beside and rename over: a failed write leaves any existing file as it was."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        raise UsageError(f"cannot write --out {path}: {e.strerror or e}") from None
    finally:
        if tmp:
            Path(tmp).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def cmd_fetch(args: argparse.Namespace) -> int:
    """Finds the dataset, downloading it into the cache if it is nowhere on disk."""
    path = locate(args.dataset, args.data_dir, download=True, mirrors=args.mirror)
    print(f"{args.dataset}: {path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Checks every file of a folder (sha256, header, sizes, labels); 1 when one is bad."""
    directory = Path(args.data_dir) if args.data_dir else locate(args.dataset, download=False)
    if not directory.is_dir():
        raise UsageError(f"--data-dir {args.data_dir} is not a folder")
    directory = holds_dataset(directory, dataset_info(args.dataset)) or directory
    problems = verify_dir(directory, args.dataset)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not problems:
        print(f"{args.dataset}: {directory}: all 4 files valid (sha256, header, sizes, labels)")
    return 1 if problems else 0


def cmd_info(args: argparse.Namespace) -> int:
    """Prints where the dataset came from, its shapes and its class balance."""
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
    """Draws a grid of images with their labels into --out, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out, fmt = check_out(args.out)
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
    write_atomic(out, lambda f: fig.savefig(f, format=fmt, dpi=100))
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The fetch, verify, info and show subcommands and their options."""
    parser = Parser(prog="mnist-bench-data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--dataset", default="mnist", choices=sorted(DATASETS))
        p.add_argument(
            "--data-dir", type=folder, help="folder with the IDX files (or with mnist/ in it)"
        )
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
    show.add_argument("--rows", type=grid_size, default=4, help=f"1..{MAX_GRID}")
    show.add_argument("--cols", type=grid_size, default=8, help=f"1..{MAX_GRID}")
    show.add_argument("--out", default="samples.png", help="image file: .png, .pdf, .svg, ...")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one subcommand; a bad argument or bad data is one line and a non-zero exit."""
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe fails here, inside the handlers below
        return status
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except UsageError as e:
        print(f"mnist-bench-data {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)  # downloads and caches clean up after themselves
        return 130
    except BrokenPipeError:  # `mnist-bench-data info | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
