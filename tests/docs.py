"""The commands the README, CONTRIBUTING.md and docs/ show, and a way for a test to run one of
them as a user would type it (tests/test_docs.py checks that each is run by some test)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
CONSOLE = {  # console scripts, as the project's own interpreter runs them
    "mnist-bench": "bench.commands.train",
    "mnist-bench-report": "bench.commands.report",
    "mnist-bench-audit": "bench.commands.audit",
    "mnist-bench-speed": "bench.commands.speed",
    "mnist-bench-data": "bench.commands.data",
}


def commands() -> dict[str, list[str]]:
    """Each command in a ```bash block, with the pages that show it (comments dropped)."""
    found: dict[str, list[str]] = {}
    for page in PAGES:
        for block in BLOCK.findall(page.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                command = " ".join(re.sub(r"\s+#.*$", "", line).split())
                if command:
                    found.setdefault(command, []).append(page.relative_to(ROOT).as_posix())
    return found


def argv(command: str) -> list[str]:
    """The command's arguments, its program resolved the way the venv's scripts resolve."""
    words = shlex.split(command)
    program = words[0].removeprefix(".venv/bin/")
    if program in CONSOLE:
        return [sys.executable, "-m", CONSOLE[program], *words[1:]]
    if program == "mlflow":
        return [str(Path(sys.executable).with_name("mlflow")), *words[1:]]
    if program in ("python", "python3"):  # the venv's interpreter, as `.venv/bin/python`
        return [sys.executable, *words[1:]]
    return words


def documented(command: str, *extra: str, replace: dict[str, str] | None = None) -> list[str]:
    """The argv of a command the docs show (else a failure), with `extra` arguments appended
    (a smaller run, a store of the test's own) and words replaced (a free port for 5001)."""
    assert command in commands(), f"not a documented command: {command}"
    words = argv(command)
    for old, new in (replace or {}).items():
        words = [w.replace(old, new) for w in words]
    return [*words, *extra]


def run_documented(
    command: str, *extra: str, cwd: Path, replace=None, env=None, timeout: float = 900
) -> subprocess.CompletedProcess:
    """Runs a documented command in `cwd` and returns the finished process."""
    return subprocess.run(
        documented(command, *extra, replace=replace),
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
