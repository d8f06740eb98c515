"""A real Slurm on localhost runs scripts/slurm/docvlm_cpu.sbatch: sbatch -> srun -> 2-rank torchrun (gloo).

The cluster (munged, slurmctld, slurmd; one node as `slurmd -C` describes this machine; no
accounting, no cgroups) is started by hand in a temporary folder and stopped by PID afterwards.
Needs the Debian packages slurmctld slurmd slurm-client munge (.ci/run installs them) and root.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from docvlm.paths import REPO_ROOT
from docvlm.synth import generate_corpus

SCRIPT = REPO_ROOT / "scripts" / "slurm" / "docvlm_cpu.sbatch"
BINARIES = ("mungekey", "munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "scancel")
DONE_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}
FAST = ["processing.max_new_tokens.detect=8", "processing.max_new_tokens.extract=24",
        "processing.max_new_tokens.bank_headers=8", "processing.max_new_tokens.bank_rows=24", "processing.batch_size=2"]

SLURM_CONF = """\
ClusterName=docvlmtest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
{node} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class LocalSlurm:
    """munged + slurmctld + slurmd in the foreground, as children of the test (stopped by PID)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        self.env["SLURM_CONF"] = str(root / "slurm.conf")

    def start(self) -> None:
        (self.root / "state").mkdir()
        (self.root / "spool").mkdir()
        self.root.chmod(0o755)  # munged insists that its socket folder is reachable
        subprocess.run(["mungekey", "--create", f"--keyfile={self.root}/munge.key"], check=True, capture_output=True)
        self._daemon("munged", "--foreground", "--force", f"--socket={self.root}/munge.socket",
                     f"--key-file={self.root}/munge.key", f"--pid-file={self.root}/munged.pid",
                     f"--log-file={self.root}/munged.log", f"--seed-file={self.root}/munged.seed")
        node = subprocess.run(["slurmd", "-C"], check=True, capture_output=True, text=True).stdout.splitlines()[0]
        host = node.split()[0].split("=", 1)[1]
        (self.root / "slurm.conf").write_text(SLURM_CONF.format(
            root=self.root, host=host, node=node, ctld_port=_free_port(), slurmd_port=_free_port()))
        self._wait_for(lambda: (self.root / "munge.socket").exists(), "munged to create its socket")
        self._daemon("slurmctld", "-D", "-c", "-f", str(self.root / "slurm.conf"))
        self._daemon("slurmd", "-D", "-N", host, "-f", str(self.root / "slurm.conf"))
        self._wait_for(self._node_idle, "the node to become idle in sinfo")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def submit(self, *args: str, env: dict[str, str]) -> str:
        out = subprocess.run(["sbatch", "--parsable", *args], check=True, capture_output=True, text=True,
                             env={**self.env, **env}, cwd=REPO_ROOT)
        return out.stdout.strip().split(";")[0]

    def wait(self, job_id: str, timeout_s: float) -> dict[str, str]:
        """Job fields (JobState, ExitCode, ...) once the job has ended; cancels it on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            fields = self.job(job_id)
            if fields.get("JobState") in DONE_STATES:
                return fields
            time.sleep(1)
        subprocess.run(["scancel", job_id], env=self.env, check=False)
        pytest.fail(f"Slurm job {job_id} did not end within {timeout_s} s: {self.job(job_id)}\n{self.logs()}")

    def job(self, job_id: str) -> dict[str, str]:
        out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, env=self.env)
        return dict(item.split("=", 1) for item in out.stdout.split() if "=" in item)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}:\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.root.glob("*.log")))

    def _daemon(self, *cmd: str) -> None:
        log = (self.root / f"{cmd[0]}.out").open("w")
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env))

    def _node_idle(self) -> bool:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env)
        return out.stdout.strip() == "idle"

    def _wait_for(self, ready, what: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead:
                pytest.fail(f"{dead} exited while waiting for {what}\n{self.logs()}{self._outs()}")
            if ready():
                return
            time.sleep(0.3)
        pytest.fail(f"timed out waiting for {what}\n{self.logs()}{self._outs()}")

    def _outs(self) -> str:
        return "\n".join(f"--- {p.name}:\n{p.read_text(errors='replace')[-2000:]}" for p in self.root.glob("*.out"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def slurm() -> Iterator[LocalSlurm]:
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(f"Slurm is not installed: {', '.join(missing)} not found "
                    "(apt-get install slurmctld slurmd slurm-client munge)")
    if os.geteuid() != 0:
        pytest.skip("the local Slurm test runs slurmd, which must be root to start job steps; run as root (CI does)")
    # A short path: munge's and Slurm's sockets live here (unix socket paths are limited to ~100 bytes).
    root = Path(tempfile.mkdtemp(prefix="docvlm-slurm-"))
    cluster = LocalSlurm(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def five_docs(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("slurm-docs")
    generate_corpus(data, {"INVOICE": 2, "RECEIPT": 1, "BANK_STATEMENT": 2}, seed=5)
    return data


def job_env(data: Path, out_root: Path, tiny_models: dict[str, Path]) -> dict[str, str]:
    return {"PYTHON": sys.executable, "DATA_DIR": str(data), "GROUND_TRUTH": str(data / "ground_truth.csv"),
            "OUTPUT_ROOT": str(out_root), "DOCVLM_CACHE": str(tiny_models["internvl"].parents[1]),
            "HF_HUB_OFFLINE": "1"}


def test_cpu_sbatch_runs_two_ranks_to_complete_results(slurm, five_docs, tiny_models, tmp_path):
    console = tmp_path / "console-%j.out"
    job = slurm.submit("--cpus-per-task=1", f"--output={console}", str(SCRIPT), *FAST,
                       env={**job_env(five_docs, tmp_path / "outputs", tiny_models), "NPROC": "2"})
    state = slurm.wait(job, timeout_s=240)
    text = Path(str(console).replace("%j", job)).read_text()
    assert (state["JobState"], state["ExitCode"]) == ("COMPLETED", "0:0"), f"{state}\n{text}\n{slurm.logs()}"

    run_dir = tmp_path / "outputs" / f"slurm-{job}"  # every rank wrote into the run dir named by SLURM_JOB_ID
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [r["image"] for r in rows] == sorted(p.name for p in five_docs.glob("*.png"))
    assert {r["rank"] for r in rows} == {0, 1} and all(r["error"] is None for r in rows)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["documents"] == 5
    assert summary["evaluation"]["documents_scored"] == 5
    for rank in (0, 1):
        assert f"[rank {rank}] INFO" in (run_dir / "logs" / f"rank-0000{rank}.log").read_text()
        assert list(run_dir.glob(f"torchrun/*/attempt_0/{rank}/stderr.log")), f"no torchrun log for local rank {rank}"

    # The console shows rank 0 (with its progress lines), not the other rank.
    assert f"run dir {run_dir}" in text and "[rank 0] INFO" in text
    assert "progress 5/5 documents" in text
    assert "[rank 1]" not in text and "[default1]" not in text


def test_a_failing_run_fails_the_slurm_job(slurm, five_docs, tiny_models, tmp_path):
    console = tmp_path / "console-%j.out"
    job = slurm.submit("--cpus-per-task=1", f"--output={console}", str(SCRIPT), "processing.batch_size=0",
                       env=job_env(five_docs, tmp_path / "outputs", tiny_models))
    state = slurm.wait(job, timeout_s=180)
    text = Path(str(console).replace("%j", job)).read_text()
    assert state["JobState"] == "FAILED" and state["ExitCode"] != "0:0", f"{state}\n{text}"
    assert "invalid config value processing.batch_size=0" in text


def test_gpu_scripts_launch_when_pointed_at_cpus(slurm, five_docs, tiny_models, tmp_path):
    """The one-node and multi-node GPU scripts, with 2 CPU ranks standing in for 2 GPUs (no GPU here)."""
    env = {**job_env(five_docs, tmp_path / "outputs", tiny_models), "MODEL": "tiny_internvl",
           "GPUS": "2", "GPUS_PER_NODE": "2"}
    jobs = {}
    for script in ("docvlm.sbatch", "docvlm_multinode.sbatch"):  # both at once: 1 CPU each
        jobs[script] = slurm.submit("--nodes=1", "--gpus-per-node=0", "--cpus-per-task=1",
                                    f"--output={tmp_path / script}-%j.out", str(SCRIPT.parent / script),
                                    "processing.device=cpu", *FAST, env=env)
    for script, job in jobs.items():
        state = slurm.wait(job, timeout_s=240)
        text = (tmp_path / f"{script}-{job}.out").read_text()
        assert (state["JobState"], state["ExitCode"]) == ("COMPLETED", "0:0"), f"{script}: {state}\n{text}"
        rows = (tmp_path / "outputs" / f"slurm-{job}" / "results.jsonl").read_text().splitlines()
        assert len(rows) == 5 and {json.loads(r)["rank"] for r in rows} == {0, 1}, script
    assert "rendezvous " in (tmp_path / f"docvlm_multinode.sbatch-{jobs['docvlm_multinode.sbatch']}.out").read_text()
