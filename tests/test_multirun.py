"""Hydra multirun under torchrun (2 ranks, gloo): every job on every rank, one process group, one folder a
job (the same on both ranks), a sweep table at the end; a job failing on ONE rank fails on both and the
sweep goes on, with no rank left waiting.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from docvlm.paths import REPO_ROOT
from docvlm.synth import generate_corpus

FAST = ["processing.max_new_tokens.detect=8", "processing.max_new_tokens.extract=8",
        "processing.max_new_tokens.bank_headers=8", "processing.max_new_tokens.bank_rows=8"]

# launch.py as torchrun runs it, plus two test hooks: count process-group creations per rank, and
# (DOCVLM_TEST_FAIL_LOAD=N) make the N-th model load on rank 1 raise, as a rank-local fault would.
WRAPPER = """\
import os, sys
sys.path.insert(0, {repo!r})
import torch.distributed as torch_dist
import docvlm.models.loading
import launch

inits = []
real_init = torch_dist.init_process_group
def counting_init(*args, **kwargs):
    inits.append(1)
    return real_init(*args, **kwargs)
torch_dist.init_process_group = counting_init

loads = []
real_load = docvlm.models.loading.load_model
def flaky_load(*args, **kwargs):
    loads.append(1)
    if os.environ["RANK"] == "1" and len(loads) == int(os.environ.get("DOCVLM_TEST_FAIL_LOAD", 0)):
        raise RuntimeError("injected fault on rank 1")
    return real_load(*args, **kwargs)
docvlm.models.loading.load_model = flaky_load  # build.py looks it up at each load

real_leave = launch._leave_process_group
def leave():  # before the ranks part: torchrun stops the others as soon as one exits non-zero
    failed = [job.num for job in launch.SWEEP.jobs if not job.ok]
    with open(os.path.join(os.environ["COUNTS_DIR"], "rank-" + os.environ["RANK"] + ".json"), "w") as f:
        f.write('{{"process_group_inits": %d, "failed_jobs": %s}}' % (len(inits), failed))
    real_leave()
launch._leave_process_group = leave

sys.exit(launch.cli())
"""


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("sweep-docs")
    generate_corpus(data, {"INVOICE": 1, "RECEIPT": 1, "BANK_STATEMENT": 1}, seed=11)
    return data


def sweep(tmp_path: Path, tiny_models: dict[str, Path], *overrides: str, fail_load: int = 0) -> subprocess.CompletedProcess:
    """torchrun 2 ranks of launch.py -m, run from tmp_path so the default output.dir lands there."""
    wrapper = tmp_path / "launch_wrapper.py"
    wrapper.write_text(WRAPPER.format(repo=str(REPO_ROOT)))
    (tmp_path / "counts").mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(wrapper),
           "-m", *FAST, "processing.dist_timeout_s=120", *overrides]
    env = {**os.environ, "DOCVLM_CACHE": str(tiny_models["internvl"].parents[1]), "HF_HUB_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1", "COUNTS_DIR": str(tmp_path / "counts"), "DOCVLM_TEST_FAIL_LOAD": str(fail_load)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=400)


def the_run_dir(tmp_path: Path) -> Path:
    """Both ranks resolved the default output.dir (outputs/torchrun-<run id>) to the SAME folder."""
    run_dirs = list((tmp_path / "outputs").iterdir())
    assert len(run_dirs) == 1 and run_dirs[0].name.startswith("torchrun-"), run_dirs
    return run_dirs[0]


def assert_complete_job(job_dir: Path, docs: Path) -> dict:
    rows = [json.loads(line) for line in (job_dir / "results.jsonl").read_text().splitlines()]
    assert [r["image"] for r in rows] == sorted(p.name for p in docs.glob("*.png"))
    assert {r["rank"] for r in rows} == {0, 1}
    for rank in (0, 1):  # each rank wrote into this job's folder: the same path on both ranks
        assert (job_dir / "parts" / f"rank-0000{rank}.jsonl").is_file()
        assert (job_dir / "logs" / f"rank-0000{rank}.log").is_file()
    assert (job_dir / ".hydra" / "overrides.yaml").is_file()
    return json.loads((job_dir / "summary.json").read_text())


def table_rows(sweep_md: Path) -> list[list[str]]:
    lines = [line for line in sweep_md.read_text().splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[1:]]


def test_two_by_two_sweep_on_two_ranks(docs, tmp_path, tiny_models):
    proc = sweep(tmp_path, tiny_models, "model=tiny_internvl,tiny_qwen3_vl", "processing.batch_size=1,4",
                 f"data.dir={docs}", f"data.ground_truth={docs / 'ground_truth.csv'}")
    assert proc.returncode == 0, f"STDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-8000:]}"
    run_dir = the_run_dir(tmp_path)
    assert sorted(p.name for p in run_dir.glob("job-*")) == ["job-0", "job-1", "job-2", "job-3"]
    expected = [("tiny_internvl", 1), ("tiny_internvl", 4), ("tiny_qwen3_vl", 1), ("tiny_qwen3_vl", 4)]
    for n, (model, batch) in enumerate(expected):
        summary = assert_complete_job(run_dir / f"job-{n}", docs)
        assert summary["model"]["name"] == model and summary["config"]["processing"]["batch_size"] == batch
        assert summary["world_size"] == 2

    for rank in (0, 1):  # one process group per rank for the whole sweep
        counts = json.loads((tmp_path / "counts" / f"rank-{rank}.json").read_text())
        assert counts == {"process_group_inits": 1, "failed_jobs": []}

    rows = table_rows(run_dir / "sweep.md")
    assert [r[:4] for r in rows] == [[str(n), f"job-{n}", f"model={m} processing.batch_size={b}", "ok"]
                                     for n, (m, b) in enumerate(expected)]
    for row in rows:  # documents, errors, documents/s, field F1 micro/macro, type accuracy
        assert row[4] == "3" and float(row[6]) > 0 and 0.0 <= float(row[7]) <= 1.0
    assert "Sweep summary" in proc.stdout and proc.stdout.count("| ok |") == 4  # printed once: rank 0 only


def test_a_job_failing_on_one_rank_fails_on_both_and_the_sweep_goes_on(docs, tmp_path, tiny_models):
    started = time.monotonic()
    proc = sweep(tmp_path, tiny_models, "model=tiny_internvl", "processing.batch_size=1,2,4", f"data.dir={docs}",
                 fail_load=2)
    assert time.monotonic() - started < 120, "a rank waited for the failed one (dist timeout)"
    assert proc.returncode != 0, "a failed job must make the sweep's exit status non-zero"
    run_dir = the_run_dir(tmp_path)
    assert_complete_job(run_dir / "job-0", docs)
    assert_complete_job(run_dir / "job-2", docs)  # after the failed job, on both ranks
    assert not (run_dir / "job-1" / "results.jsonl").exists()

    rows = table_rows(run_dir / "sweep.md")
    assert [r[3] for r in rows][0::2] == ["ok", "ok"]
    assert rows[1][3].startswith("FAILED") and "rank 1" in rows[1][3] and "injected fault on rank 1" in rows[1][3]
    for rank in (0, 1):  # both ranks saw job 1 fail and ran job 2 with the same process group
        counts = json.loads((tmp_path / "counts" / f"rank-{rank}.json").read_text())
        assert counts == {"process_group_inits": 1, "failed_jobs": [1]}
        log = (run_dir / "job-1" / "logs" / f"rank-0000{rank}.log").read_text()
        assert "job 1" in log and "injected fault on rank 1" in log


def test_sweep_records_a_failed_job_and_goes_on(tmp_path, capsys):
    from docvlm.dist import RanksOutOfStep
    from docvlm.sweep import Sweep

    def fake_run(cfg):
        if cfg == "bad":
            raise ValueError("broken | config")
        return {"documents": 3, "errors": 0, "documents_per_s": 1.5, "evaluation": None}

    sweep_ = Sweep()
    for num, cfg in enumerate(["good", "bad", "good"]):
        sweep_.run_job(fake_run, cfg, num=num, overrides=[f"x={num}", "y=1"], sweep_dir=str(tmp_path),
                       output_dir=str(tmp_path / f"job-{num}"))
    assert [job.ok for job in sweep_.jobs] == [True, False, True]
    assert sweep_.finish(is_main=True) == 1
    header, _, *rows = (tmp_path / "sweep.md").read_text().split("\n\n", 1)[1].splitlines()
    assert "F1" not in header  # no ground truth, no F1 columns
    assert rows[0] == "| 0 | job-0 | x=0 | ok | 3 | 0 | 1.500 |"
    assert rows[1] == "| 1 | job-1 | x=1 | FAILED: ValueError: broken \\| config |  |  |  |"
    assert "Sweep summary" in capsys.readouterr().out
    assert Sweep().finish(is_main=True) == 0  # no sweep (a single run): nothing to write

    def out_of_step(cfg):
        raise RanksOutOfStep("a collective failed")

    with pytest.raises(RanksOutOfStep):  # the ranks may be out of step: the sweep must end
        sweep_.run_job(out_of_step, "any", num=3, overrides=[], sweep_dir=str(tmp_path),
                       output_dir=str(tmp_path / "job-3"))


def test_a_jobs_user_error_is_its_line_in_the_log_and_the_table(tmp_path, caplog, monkeypatch):
    from docvlm.errors import UserError
    from docvlm.sweep import Sweep

    def fake_run(cfg):
        raise UserError("invalid config value processing.max_tiles=0: allowed an integer >= 1")

    monkeypatch.delenv("DOCVLM_DEBUG", raising=False)
    sweep_ = Sweep()
    with caplog.at_level("ERROR"):
        sweep_.run_job(fake_run, "cfg", num=0, overrides=["processing.max_tiles=0"], sweep_dir=str(tmp_path),
                       output_dir=str(tmp_path / "job-0"))
    assert [r.exc_info for r in caplog.records] == [None]  # no traceback for the user's mistake
    assert caplog.records[0].getMessage() == ("job 0 (processing.max_tiles=0) failed: invalid config value "
                                              "processing.max_tiles=0: allowed an integer >= 1")
    assert sweep_.jobs[0].error == "invalid config value processing.max_tiles=0: allowed an integer >= 1"


def test_sweep_table_with_ground_truth_shows_field_f1():
    from docvlm.sweep import JobOutcome, summary_table

    overall = {"micro_f1": 0.5, "macro_f1": 0.25, "type_accuracy": 1.0}
    jobs = [JobOutcome(0, ["m=a"], "job-0", summary={"documents": 2, "errors": 1, "documents_per_s": 0.5,
                                               "evaluation": {"overall": overall}}),
            JobOutcome(1, ["m=b"], "job-1", error="JobFailed: rank 1: boom")]
    header, _, *rows = summary_table(jobs).splitlines()
    assert header.endswith("| field F1 micro | field F1 macro | type accuracy |")
    assert rows == ["| 0 | job-0 | m=a | ok | 2 | 1 | 0.500 | 0.500 | 0.250 | 1.000 |",
                    "| 1 | job-1 | m=b | FAILED: JobFailed: rank 1: boom |  |  |  |  |  |  |"]
