"""A real single-node SLURM for the tests: munged, slurmctld and slurmd of Debian's `munge` and `slurm-wlm`
packages, started as root with a configuration written into a temporary dir (their own ports, sockets, spool and
state: nothing under /etc is read or changed, and a second cluster can run beside it). `.ci/run` installs the
packages; without them, or without root, `start` raises Unavailable with the reason, and the tests that need a
cluster skip with it.

    cluster = start(tmp_dir)      # sbatch, squeue, scancel, scontrol of this process now talk to it
    ...
    cluster.stop()

The node declares more CPUs than the machine has (tasks that mostly wait share the 2 cores of CI), and the
controller schedules every second and lets a requeued job start again after 6 s (cred_expire=5) instead of 121.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "srun")
NODE = "rpbench-node"
PARTITION = "debug"
START_TIMEOUT_S = 30.0

CONFIG = """\
ClusterName=rpbench-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket,cred_expire=5
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
KillWait=2
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 CPUs=8 RealMemory=4000 State=UNKNOWN
PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


class Unavailable(RuntimeError):
    """Why no cluster can start here (one line: the test skips with it)."""


@dataclass
class Cluster:
    root: Path
    config: Path
    partition: str = PARTITION
    processes: list[subprocess.Popen] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.config)}

    def run(self, *command: str, check: bool = True) -> str:
        """A SLURM client command against this cluster; its stdout."""
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **self.env()},
                              timeout=30)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def logs(self) -> str:
        """The tails of the daemons' logs (for a failure message)."""
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "munge/munged.log"):
            path = self.root / name
            if path.is_file():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel every job still there (a failed test may leave one hanging), then stop the daemons."""
        if self.processes and all(process.poll() is None for process in self.processes):
            self.run("scancel", "--partition", self.partition, check=False)
            deadline = time.monotonic() + 15
            while self.run("squeue", "--noheader", check=False).strip() and time.monotonic() < deadline:
                time.sleep(0.2)
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


def _which(name: str) -> str | None:
    """A daemon or client of the packages (the daemons live in /usr/sbin, often not on a user's PATH)."""
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(root: Path) -> Cluster:
    """Start munged, slurmctld and slurmd under `root`; Unavailable (with why) when they cannot run here."""
    if os.name != "posix" or os.geteuid() != 0:
        raise Unavailable("a test SLURM needs root (slurmd starts jobs as their user); run the tests as root")
    missing = [name for name in DAEMONS + CLIENTS if _which(name) is None]
    if missing:
        raise Unavailable(f"{', '.join(missing)} not installed (apt-get install slurm-wlm munge; .ci/run does)")
    root = Path(root)
    for sub in ("munge", "state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "munge", 0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)
    host = socket.gethostname()
    config = root / "slurm.conf"
    config.write_text(CONFIG.format(host=host, ctld_port=_free_port(), slurmd_port=_free_port(), root=root,
                                    node=NODE, partition=PARTITION))
    cluster = Cluster(root, config)
    env = {**os.environ, **cluster.env()}
    commands = [
        [_which("munged"), "--foreground", "--force", f"--socket={root}/munge/munge.socket", f"--key-file={key}",
         f"--pid-file={root}/munge/munged.pid", f"--log-file={root}/munge/munged.log",
         f"--seed-file={root}/munge/munged.seed"],
        [_which("slurmctld"), "-D", "-i", "-f", str(config)],
        [_which("slurmd"), "-D", "-N", NODE, "-f", str(config)],
    ]
    try:
        for command in commands:
            cluster.processes.append(subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                                      stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                                      start_new_session=True))
            if command[0].endswith("munged"):
                _wait_for(lambda: (root / "munge" / "munge.socket").exists(), cluster, "munged's socket")
        _wait_for(lambda: _node_idle(cluster), cluster, f"node {NODE} idle")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _node_idle(cluster: Cluster) -> bool:
    try:
        return "State=IDLE" in cluster.run("scontrol", "show", "node", NODE, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False


def _wait_for(ready, cluster: Cluster, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        dead = [p.args[0] for p in cluster.processes if p.poll() is not None]
        if dead:
            raise Unavailable(f"{os.path.basename(dead[0])} exited at start: {cluster.logs()[-1500:]}")
        if ready():
            return
        time.sleep(0.2)
    raise Unavailable(f"{what} not reached within {START_TIMEOUT_S:g} s: {cluster.logs()[-1500:]}")
