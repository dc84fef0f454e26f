"""A single-node Slurm cluster for the tests: munged, slurmctld and slurmd of Debian's slurm-wlm, with
every state, spool, socket, log and key file under one folder. Every configured address is 127.0.0.1
and slurmd binds to it; slurmctld 22.05 binds its (random, free) port on every interface, having no
setting for one address, and accepts only messages signed with this cluster's own munge key.

The node has a few CPUs and sits in two partitions that stand for two machine types (`a100`, `h100`),
plus a partition that is down (a machine type whose jobs never start). Client commands (sbatch, squeue,
scancel) find it through $SLURM_CONF, so nothing in /etc is touched and no other cluster is seen.
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
NODE = "n1"
PARTITIONS = ("a100", "h100")
DOWN_PARTITION = "offline"


def missing() -> str | None:
    """Why the cluster cannot start here, or None."""
    need = [d for d in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "mungekey")
            if not shutil.which(d) and not Path(f"/usr/sbin/{d}").exists()]
    if need:
        return f"Slurm is not installed ({', '.join(need)} missing): scripts/test.sh installs slurm-wlm and munge"
    if os.geteuid() != 0:
        return "the test Slurm cluster runs its daemons as root (not root here)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _exe(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


@dataclass
class Cluster:
    root: Path
    cpus: int = 4
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def write_config(self) -> None:
        for d in ("state", "spool", "munge", "log", "run"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        sock = self.root / "munge" / "munge.sock"
        ctld_port, d_port = _free_port(), _free_port()
        self.conf.write_text(f"""\
ClusterName=milestones-test
# slurmctld accepts "localhost" as its own name whatever the host is called
SlurmctldHost=localhost(127.0.0.1)
MailProg=/bin/true
# bind each daemon to the address its name resolves to (127.0.0.1), not to every interface
CommunicationParameters=NoInAddrAny
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long slurmctld holds a requeued job back (default 120 s, all of it waiting in
# the time-limit test); 20 s still leaves a step's launch credential ample time on a loaded machine
AuthInfo=socket={sock},cred_expire=20
StateSaveLocation={self.root}/state
SlurmdSpoolDir={self.root}/spool
SlurmctldPidFile={self.root}/run/slurmctld.pid
SlurmdPidFile={self.root}/run/slurmd.pid
SlurmctldLogFile={self.root}/log/slurmctld.log
SlurmdLogFile={self.root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
SchedulerParameters=sched_interval=1,bf_interval=1
MessageTimeout=20
KillWait=30
InactiveLimit=0
MinJobAge=300
JobRequeue=1
NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname={NODE} CPUs={self.cpus} State=UNKNOWN
PartitionName={PARTITIONS[0]} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
PartitionName={PARTITIONS[1]} Nodes={NODE} MaxTime=INFINITE State=UP
PartitionName={DOWN_PARTITION} Nodes={NODE} MaxTime=INFINITE State=DOWN
""")
        key = self.root / "munge" / "munge.key"
        subprocess.run([_exe("mungekey"), "--create", "--keyfile", str(key), "--force"], check=True,
                       capture_output=True)
        key.chmod(0o400)
        (self.root / "munge").chmod(0o755)  # clients must reach the socket

    def _start(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env={**os.environ, **self.env}, start_new_session=True)

    def start(self, timeout: float = 60.0) -> None:
        self.write_config()
        m = self.root / "munge"
        self._start("munged", [_exe("munged"), "--foreground", "--force", f"--socket={m}/munge.sock",
                               f"--key-file={m}/munge.key", f"--pid-file={m}/munged.pid",
                               f"--log-file={self.root}/log/munged.log", f"--seed-file={m}/munge.seed"])
        self._wait(lambda: (m / "munge.sock").exists(), timeout, "munged")
        self._start("slurmctld", [_exe("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._start("slurmd", [_exe("slurmd"), "-D", "-N", NODE, "-f", str(self.conf)])
        self._wait(self._node_idle, timeout, "slurmd (node idle)")

    def _node_idle(self) -> bool:
        r = subprocess.run(["sinfo", "-h", "-n", NODE, "-o", "%T"], capture_output=True, text=True,
                           env={**os.environ, **self.env})
        return r.returncode == 0 and any(s.strip().startswith("idle") for s in r.stdout.splitlines())

    def _wait(self, ready, timeout: float, what: str) -> None:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited while starting; logs: {self.root / 'log'}\n"
                                   + self.logs())
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{what} not ready after {timeout:g} s; logs: {self.root / 'log'}\n" + self.logs())

    def logs(self) -> str:
        out = []
        for f in sorted((self.root / "log").glob("*")):
            out.append(f"--- {f.name}\n" + f.read_text(errors="replace")[-3000:])
        return "\n".join(out)

    def run(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), capture_output=True, text=True, env={**os.environ, **self.env}, timeout=60)

    def stop(self) -> None:
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--user", "root")
        for name in reversed(DAEMONS):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
