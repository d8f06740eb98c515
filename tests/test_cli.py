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


def test_a_ranks_error_reaches_torchrun_in_a_file_written_whole(tmp_path, monkeypatch):
    """torchrun reads $TORCHELASTIC_ERROR_FILE as soon as it sees the rank fail: the file is replaced,
    never seen half-written (a truncated one crashed torchrun's agent with a JSONDecodeError), and
    holds what torch's ErrorHandler would write, so the failure summary shows the error."""
    import json

    from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

    error_file = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(error_file))
    writes = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (writes.append((src, dst)), real_replace(src, dst))[1])
    try:
        raise ValueError("data.dir='/nowhere' does not exist")
    except ValueError as err:
        launch._tell_torchrun(err)
    assert writes and writes[-1][1] == error_file  # renamed into place
    ours = json.loads(error_file.read_text())
    assert ours["message"]["message"] == "ValueError: data.dir='/nowhere' does not exist"
    assert "raise ValueError" in ours["message"]["extraInfo"]["py_callstack"]
    # The same shape as torch's own record_exception writes (the agent's reader expects it).
    theirs_file = tmp_path / "theirs.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(theirs_file))
    try:
        raise ValueError("x")
    except ValueError as err:
        ErrorHandler().record_exception(err)
    theirs = json.loads(theirs_file.read_text())
    assert set(ours) == set(theirs) and set(ours["message"]) == set(theirs["message"])
    assert set(ours["message"]["extraInfo"]) == set(theirs["message"]["extraInfo"])

    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE")
    launch._tell_torchrun(ValueError("not under torchrun"))  # nothing to write, no error


def test_make_samples_refuses_a_folder_with_other_documents_and_counts_what_it_wrote(tmp_path, capsys):
    from docvlm.cli import main as docvlm_main

    out = tmp_path / "samples"
    assert docvlm_main(["make-samples", "--out", str(out)]) == 0
    assert "wrote 7 documents and their ground truth" in capsys.readouterr().out
    first = sorted(p.name for p in out.iterdir())
    (out / "mine.png").write_bytes(b"the user's own")
    assert docvlm_main(["make-samples", "--out", str(out), "--seed", "1"]) == 2  # would mix corpora
    assert capsys.readouterr().err.startswith(f"error: --out {out} already holds 9 files")  # 7 + CSV + the user's
    assert sorted(p.name for p in out.iterdir()) == sorted([*first, "mine.png"])  # nothing written
    assert docvlm_main(["make-samples", "--out", str(out), "--seed", "1", "--overwrite"]) == 0
    assert "1 other files" in capsys.readouterr().out
    assert (out / "mine.png").read_bytes() == b"the user's own"  # never deleted: docvlm did not write it
    rows = (out / "ground_truth.csv").read_text().splitlines()[1:]
    assert len(rows) == 7 and len(list(out.glob("doc-*"))) == 7  # the earlier set is gone, not mixed in


def test_evaluate_user_errors_are_one_line(tmp_path, capsys, monkeypatch):
    from docvlm.cli import main as docvlm_main

    monkeypatch.delenv("DOCVLM_DEBUG", raising=False)
    truth = tmp_path / "gt.csv"
    truth.write_text("image_file,DOCUMENT_TYPE\na.png,INVOICE\n")
    assert docvlm_main(["evaluate", str(tmp_path / "missing.jsonl"), str(truth)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing.jsonl'}: no such results file: give a run's " \
                                      "results.jsonl (in its output.dir)\n"
    results = tmp_path / "results.jsonl"
    results.write_text("")
    assert docvlm_main(["evaluate", str(results), str(tmp_path / "nope.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.csv" in err
    monkeypatch.setenv("DOCVLM_DEBUG", "1")
    with pytest.raises(ValueError, match="nope.csv"):
        docvlm_main(["evaluate", str(results), str(tmp_path / "nope.csv")])


@pytest.mark.skipif(shutil.which("git") is None or not (REPO_ROOT / ".git").exists(), reason="not a git checkout")
def test_gitignore_lists_no_tracked_file():
    """A tracked file matched by .gitignore (conf/config.yaml was reported) hides the user's edits to it."""
    proc = subprocess.run(["git", "ls-files", "-ci", "--exclude-standard"], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout
