"""The README's first command (the main job) works as written, from an empty cache."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import json

from docvlm.paths import REPO_ROOT


def readme_commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_the_main_job_and_the_tests():
    main_job, tests = readme_commands()[:2]
    assert "torchrun --nproc_per_node=2 launch.py" in main_job
    assert "pytest" in tests
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert tests.split("&& ")[-1].replace("python ", "python3 ") in ci  # CI runs the README's test command


def test_readme_main_command_produces_all_outputs(tmp_path):
    main_job = readme_commands()[0].split("&& ")[-1]  # the install steps already ran for this test session
    argv = shlex.split(main_job)
    out = tmp_path / "demo"
    argv = [f"output.dir={out}" if a.startswith("output.dir=") else a for a in argv]
    env = {**os.environ, "DOCVLM_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    for name in ("results.jsonl", "results.csv", "summary.json", "evaluation.json", "report.md",
                 "parts/rank-00000.jsonl", "parts/rank-00001.jsonl", ".hydra/config.yaml"):
        assert (out / name).is_file(), name
    assert list((out / "plots").glob("*.png"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["documents"] == summary["ok"] > 0
