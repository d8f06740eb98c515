"""Command-line comfort: `launch.py --help` (groups and main keys), `--cfg job` (resolved), `docvlm --help`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from docvlm.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
import launch  # noqa: E402  (launch.py sits beside the package, not inside it)


def run(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DOCVLM_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120)


def test_help_shows_groups_and_main_keys(tmp_path):
    proc = run("launch.py", "--help", cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for group in ("model", "data", "debug"):  # every option of the groups users pick from
        options = sorted(p.stem for p in (REPO_ROOT / "conf" / group).glob("*.yaml"))
        assert f"{group}: {', '.join(options)}" in out, group
    assert "tiny_internvl" in out
    for key in ("data.dir=", "data.ground_truth=", "model.path=", "output.dir=", "output.overwrite=",
                "processing.batch_size=", "processing.num_gpus=", "processing.max_tiles="):
        assert key in out, key
    assert "torchrun --nproc_per_node" in out and " -m " in out and "sbatch scripts/slurm/" in out
    assert "--cfg job" in out
    # Short enough to read: the schema and the prompts (hundreds of lines) are left to --cfg job.
    assert len(out.splitlines()) < 60 and "bank_header_roles" not in out


def test_cfg_job_prints_the_resolved_config(tmp_path):
    proc = run("launch.py", "--cfg", "job", "model=tiny_qwen3_vl", "data=samples", "processing.batch_size=3", cache=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "${" not in proc.stdout  # interpolations resolved
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["model"]["path"] == str(tmp_path / "tiny" / "qwen3_vl")
    assert cfg["data"]["dir"] == str(tmp_path / "samples" / "seed-0")
    assert cfg["data"]["ground_truth"] == str(tmp_path / "samples" / "seed-0" / "ground_truth.csv")
    assert cfg["processing"]["batch_size"] == 3
    assert cfg["schema"]["types"]["BANK_STATEMENT"]["flow"] == "bank"  # the whole config, not just the top
    assert not (tmp_path / "samples").exists()  # printing runs nothing


def test_cfg_job_rejects_a_misspelt_key(tmp_path):
    proc = run("launch.py", "--cfg", "job", "processing.batchsize=3", cache=tmp_path)
    assert proc.returncode != 0 and "processing.batchsize" in proc.stderr


@pytest.mark.parametrize(("argv", "added"), [
    (["launch.py", "--cfg", "job"], True),
    (["launch.py", "-c", "job", "model=tiny_internvl"], True),
    (["launch.py", "--cfg=job"], True),
    (["launch.py", "--cfg", "job", "--resolve"], False),
    (["launch.py", "--cfg", "hydra"], False),  # Hydra's own config refers to keys only a job has
    (["launch.py", "model=tiny_internvl"], False),
])
def test_only_cfg_job_gets_resolve(argv, added):
    assert launch.resolve_printed_config(argv) == (argv + ["--resolve"] if added else argv)


def test_docvlm_console_script_lists_its_subcommands(tmp_path):
    commands = [[sys.executable, "-m", "docvlm.cli", "--help"]]
    if shutil.which("docvlm"):  # installed with `pip install -e .` (setup.cfg console_scripts)
        commands.append(["docvlm", "--help"])
    for cmd in commands:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        for sub in ("make-samples", "evaluate"):
            assert sub in proc.stdout, (cmd, sub)
    assert "docvlm = docvlm.cli:main" in (REPO_ROOT / "setup.cfg").read_text()
