"""A real one-node SLURM cluster in a folder, without systemd: for trying the submitit launcher
here (`make slurm-up` / `make slurm-down`) and for the tests that run sweeps on it.

Debian's `slurm-wlm` (22.05), `slurmdbd`, `munge` and `mariadb-server`, every daemon as root:
- munged with a generated key, on munge's default socket (SLURM's clients reach slurmdbd only
  there); a munged already serving that socket is used as it is;
- accounting: MariaDB in the folder on a port of its own, and slurmdbd on it, since submitit
  reads each job's state with `sacct` (without accounting it never sees a cancelled job end);
- slurmctld and slurmd with their state, spool, logs and pid files in the folder and ports of
  their own; a minimal slurm.conf: proctrack/pgid and task/none (no cgroups here),
  select/cons_tres with the node line `slurmd -C` prints, so memory requests work.
Clients find it through SLURM_CONF=<folder>/slurm.conf, which `up` prints and `env()` returns.
`up` waits until `sinfo` shows the node idle; `down` stops what `up` started, and only that.

    python -m bench.sweep.slurm up results/slurm     # prints: export SLURM_CONF=...
    python -m bench.sweep.slurm down results/slurm
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PARTITION = "debug"
PIDS = ("slurmd.pid", "slurmctld.pid", "slurmdbd.pid", "mariadbd.pid", "munged.pid")  # stop order
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")  # munge's default: where sacct looks for it
PROGRAMS = ("munged", "munge", "slurmctld", "slurmd", "slurmdbd", "sacctmgr", "sinfo", "sbatch",
            "mariadbd", "mariadb-install-db")  # fmt: skip


class ClusterError(RuntimeError):
    """The cluster could not start (the message names the log to read); one line."""


def missing() -> list[str]:
    """The programs a cluster needs that this machine lacks (Debian's slurm-wlm, slurmdbd,
    munge and mariadb-server)."""
    return [p for p in PROGRAMS if not shutil.which(p)]


def env(folder: Path) -> dict[str, str]:
    """What a client of this cluster needs in its environment."""
    return {"SLURM_CONF": str((Path(folder) / "slurm.conf").resolve())}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_line() -> str:
    """This machine as slurmd sees it (CPUs, sockets, cores, memory), for slurm.conf."""
    found = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in found.splitlines() if ln.startswith("NodeName="))
    return " ".join(w for w in line.split() if not w.startswith("UpTime="))


def write_conf(folder: Path, dbd_port: int) -> Path:
    """slurm.conf for a cluster of this one node, everything under `folder`."""
    host = socket.gethostname().split(".")[0]
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf = folder / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=mnistbench",
        f"SlurmctldHost={host}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"StateSaveLocation={folder / 'state'}",
        f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}",
        f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'slurmctld.log'}",
        f"SlurmdLogFile={folder / 'slurmd.log'}",
        f"SlurmctldPort={free_port()}",
        f"SlurmdPort={free_port()}",
        "ProctrackType=proctrack/pgid",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/slurmdbd",
        "AccountingStorageHost=localhost",
        f"AccountingStoragePort={dbd_port}",
        "JobCompType=jobcomp/none",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "ReturnToService=2",
        "MpiDefault=none",
        "SlurmctldTimeout=30",
        "SlurmdTimeout=30",
        "KillWait=5",
        "MinJobAge=300",
        f"{node_line()} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
    ]) + "\n")  # fmt: skip
    return conf


def munge_running() -> bool:
    """Whether a munged answers on the default socket."""
    return subprocess.run(["munge", "-n"], capture_output=True).returncode == 0


def start_munge(folder: Path) -> None:
    """munged with a key of its own (1 KiB from the OS's random source) on the default socket,
    unless one already answers there (its key then serves this cluster too)."""
    if munge_running():
        return
    MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    subprocess.run(
        ["munged", "--force", f"--key-file={key}", f"--socket={MUNGE_SOCKET}",
         f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
         f"--seed-file={folder / 'munge.seed'}"],
        check=True, capture_output=True,
    )  # fmt: skip


def start_accounting(folder: Path, dbd_port: int) -> None:
    """MariaDB in the folder and slurmdbd on it (on dbd_port), the cluster registered."""
    data, db_port = folder / "mariadb", free_port()
    subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True)  # fmt: skip
    subprocess.Popen(
        ["mariadbd", "--no-defaults", f"--datadir={data}", f"--socket={folder / 'mariadb.sock'}",
         f"--port={db_port}", "--bind-address=127.0.0.1", "--user=root", "--skip-name-resolve",
         f"--pid-file={folder / 'mariadbd.pid'}", f"--log-error={folder / 'mariadbd.log'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    wait_port(db_port, folder / "mariadbd.log")
    conf = folder / "slurmdbd.conf"  # beside slurm.conf: slurmdbd finds it there
    conf.write_text("\n".join([
        "AuthType=auth/munge", "DbdHost=localhost", f"DbdPort={dbd_port}", "SlurmUser=root",
        f"LogFile={folder / 'slurmdbd.log'}", f"PidFile={folder / 'slurmdbd.pid'}",
        "StorageType=accounting_storage/mysql", "StorageHost=127.0.0.1", f"StoragePort={db_port}",
        "StorageUser=root", "StorageLoc=slurm_acct_db",
    ]) + "\n")  # fmt: skip
    conf.chmod(0o600)
    subprocess.run(["slurmdbd"], check=True, capture_output=True, env={**os.environ, **env(folder)})
    wait_port(dbd_port, folder / "slurmdbd.log")
    subprocess.run(["sacctmgr", "-i", "add", "cluster", "mnistbench"], check=True,
                   capture_output=True, env={**os.environ, **env(folder)})  # fmt: skip


def wait_port(port: int, log: Path, timeout_s: float = 60) -> None:
    """Until something listens on 127.0.0.1:port; else ClusterError naming its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise ClusterError(f"nothing listens on port {port} after {timeout_s:.0f} s: see {log}")


def wait_idle(folder: Path, timeout_s: float = 60) -> None:
    """Until sinfo shows the node idle; else ClusterError naming the logs."""
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        found = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                               env={**os.environ, **env(folder)})  # fmt: skip
        state = found.stdout.strip()
        if state == "idle":
            return
        time.sleep(0.5)
    raise ClusterError(f"the node is {state or 'not listed'} after {timeout_s:.0f} s, not idle: "
                       f"see {folder}/slurmctld.log and {folder}/slurmd.log")  # fmt: skip


def up(folder: Path) -> dict[str, str]:
    """Starts munged, slurmctld and slurmd under `folder`; returns the clients' environment."""
    if lacking := missing():
        raise ClusterError(f"{', '.join(lacking)} not found: install Debian's packages "
                           "(apt-get install slurm-wlm slurmdbd munge mariadb-server)")  # fmt: skip
    folder = Path(folder).resolve()
    down(folder)  # a cluster this folder held before is stopped first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        dbd_port = free_port()
        conf = write_conf(folder, dbd_port)  # first: slurmdbd and sacctmgr read it too
        start_munge(folder)
        start_accounting(folder, dbd_port)
        for daemon in ("slurmctld", "slurmd"):
            args = [daemon, "-f", str(conf)] + (["-i"] if daemon == "slurmctld" else [])
            proc = subprocess.run(args, capture_output=True, text=True)
            if proc.returncode != 0:
                raise ClusterError(f"{daemon} did not start: {proc.stderr.strip()[-300:]} "
                                   f"(see {folder}/{daemon}.log)")  # fmt: skip
        wait_idle(folder)
    except (ClusterError, subprocess.CalledProcessError) as e:
        down(folder)  # nothing half-started is left behind
        if isinstance(e, subprocess.CalledProcessError):
            what = " ".join(map(str, e.cmd[:3]))
            raise ClusterError(f"{what} failed: {(e.stderr or b'').decode()[-300:].strip()}") from e
        raise
    return env(folder)


def down(folder: Path, wait_s: float = 20) -> None:
    """Stops the daemons whose pid files `folder` holds: SIGTERM, then SIGKILL after wait_s."""
    for name in PIDS:
        path = Path(folder) / name
        if not path.exists():
            continue
        try:
            pid = int(path.read_text().strip())
            os.kill(pid, signal.SIGTERM)
        except (ValueError, ProcessLookupError):
            path.unlink(missing_ok=True)
            continue
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is gone for our purpose
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2 or args[0] not in ("up", "down"):
        print("usage: python -m bench.sweep.slurm up|down FOLDER", file=sys.stderr)
        return 2
    try:
        if args[0] == "up":
            for key, value in up(Path(args[1])).items():
                print(f"export {key}={value}")
        else:
            down(Path(args[1]))
    except (ClusterError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
