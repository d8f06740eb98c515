"""A user's mistake is ONE line (rank 0 only), exit status 2, no traceback; DOCVLM_DEBUG=1 or
HYDRA_FULL_ERROR=1 shows the traceback; an internal bug keeps its traceback. Also under torchrun."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import docvlm.run
from docvlm.errors import TORCHRUN_NOTE, USER_ERROR_EXIT, UserError
from docvlm.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
import launch  # noqa: E402  (launch.py sits beside the package, not inside it)


def cli(monkeypatch: pytest.MonkeyPatch, *overrides: str) -> int:
    monkeypatch.setattr(sys, "argv", ["launch.py", *overrides])
    return launch.cli()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG not really")  # never read: the errors come first
    return folder


@pytest.fixture(autouse=True)
def no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DOCVLM_DEBUG", "HYDRA_FULL_ERROR", "RANK", "TORCHELASTIC_ERROR_FILE"):
        monkeypatch.delenv(name, raising=False)


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    out, err = capsys.readouterr()
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out + err
    return lines[0]


@pytest.mark.parametrize(("overrides", "expected"), [
    (["processing.bach_size=2"], "unknown config key processing.bach_size; did you mean processing.batch_size?"),
    (["batch_size=2"], "did you mean processing.batch_size?"),
    (["modl=ocr"], "did you mean model?"),
    (["model=tiny_intrnvl"], "model=tiny_intrnvl: no such model; did you mean model=tiny_internvl?"),
    (["data=sampls"], "did you mean data=samples?"),
    (["processing.batch_size=many"], "invalid value processing.batch_size=many"),
    (["processing.batch_size"], "Error parsing override 'processing.batch_size': write overrides as key=value"),
    (["processing.max_tiles=0", "data.dir=/x"], "processing.max_tiles=0: allowed an integer >= 1"),
    (["+procesing.max_tiles=3", "data.dir=/x"], "did you mean processing.max_tiles?"),
    (["model=ocr"], "data.dir is not set: give the folder of your documents with data.dir=FOLDER"),
])
def test_config_mistakes_are_one_line_with_a_suggestion(monkeypatch, capsys, tmp_path, overrides, expected):
    assert cli(monkeypatch, *overrides, f"output.dir={tmp_path / 'out'}") == USER_ERROR_EXIT
    assert expected in one_error_line(capsys)


def _model_dir_message(path: Path) -> str:
    return f"model folder {path} does not exist"


@pytest.mark.parametrize("case", ["no data dir", "empty data dir", "output is a file", "output cannot be made",
                                  "bad ground truth", "no weights"])
def test_path_mistakes_are_one_line(monkeypatch, capsys, tmp_path, docs, case):
    out = tmp_path / "out"
    overrides = ["model=ocr", f"data.dir={docs}", f"output.dir={out}"]
    if case == "no data dir":
        overrides[1], expected = f"data.dir={tmp_path / 'nowhere'}", "does not exist"
    elif case == "empty data dir":
        (docs / "a.png").unlink()
        expected = f"data.dir={docs} holds no documents"
    elif case == "output is a file":
        out.write_text("not a folder")
        expected = f"output.dir={out}"
    elif case == "output cannot be made":  # /proc takes no folders, even from root (tests may run as root)
        if not Path("/proc/self").is_dir():
            pytest.skip("needs Linux /proc")
        overrides[2], expected = "output.dir=/proc/docvlm-out", "output.dir=/proc/docvlm-out is not a writable folder"
    elif case == "bad ground truth":
        truth = tmp_path / "truth.csv"
        truth.write_text("image_file,DOCUMENT_TYPE\na.png,POSTCARD\n")
        overrides.append(f"data.ground_truth={truth}")
        expected = f"{truth}:2"
    else:
        overrides[0] = "model=internvl3_5_8b"
        overrides.append(f"model.path={tmp_path / 'weights'}")
        expected = f"hf download OpenGVLab/InternVL3_5-8B-HF --local-dir {tmp_path / 'weights'}"
    assert cli(monkeypatch, *overrides) == USER_ERROR_EXIT
    assert expected in one_error_line(capsys)


def test_other_ranks_stay_silent(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("RANK", "1")
    assert cli(monkeypatch, "processing.bach_size=2", f"output.dir={tmp_path}") == USER_ERROR_EXIT
    out, err = capsys.readouterr()
    assert out + err == ""


@pytest.mark.parametrize("variable", ["DOCVLM_DEBUG", "HYDRA_FULL_ERROR"])
def test_debug_shows_the_traceback(monkeypatch, tmp_path, docs, variable):
    """The error leaves cli() as itself (Python prints its traceback), chained to where it was raised."""
    monkeypatch.setenv(variable, "1")
    with pytest.raises(UserError, match="allowed an integer >= 1"):
        cli(monkeypatch, "processing.max_tiles=0", "data.dir=/x", f"output.dir={tmp_path}")
    with pytest.raises(Exception) as raised:  # a rank's failure, through dist.together
        cli(monkeypatch, "model=ocr", f"data.dir={tmp_path / 'nowhere'}", f"output.dir={tmp_path / 'o'}")
    assert isinstance(raised.value.__cause__, UserError) and "does not exist" in str(raised.value.__cause__)
    assert os.environ[variable] == "1"


def test_internal_bugs_keep_their_traceback(monkeypatch, tmp_path, docs):
    def broken(cfg):
        raise KeyError("a bug, not the user's mistake")

    monkeypatch.setattr(docvlm.run, "run", broken)
    with pytest.raises(KeyError, match="a bug"):
        cli(monkeypatch, "model=ocr", f"data.dir={docs}", f"output.dir={tmp_path / 'out'}")
    assert "HYDRA_FULL_ERROR" not in os.environ  # launch's own setting does not leak


def run_script(*args: str, env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **env})


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not installed")
def test_under_torchrun_the_error_is_one_line_and_no_traceback_of_ours(tmp_path):
    """Ours is one line, printed once (rank 0). torchrun itself then prints its failure report whenever a
    rank exits non-zero, whatever the rank wrote (~40 lines for 2 ranks: its own traceback and a block per
    rank): the report carries our line instead of a stack. `python launch.py --nproc-per-node` avoids it."""
    missing = tmp_path / "nowhere"
    proc = run_script("torchrun", "--nproc_per_node=2", "launch.py", "model=ocr", f"data.dir={missing}",
                      f"output.dir={tmp_path / 'o'}", env={"OMP_NUM_THREADS": "1"}, timeout=300)
    console = (proc.stdout + proc.stderr).splitlines()
    assert proc.returncode != 0
    line = f"error: data.dir={missing} does not exist: give the folder of your documents with data.dir=FOLDER"
    assert console.count(line) == 1, "\n".join(console)  # rank 0 only
    assert console[console.index(line) + 1] == TORCHRUN_NOTE  # says why more follows, and the short way
    assert not any("launch.py\", line" in c or "/docvlm/" in c for c in console), "\n".join(console)  # no stack of ours
    message = line.removeprefix("error: ")
    assert sum(message in c for c in console) >= 2  # rank 0's line, and the report's block of a rank
    assert len(console) <= 50, "\n".join(console)  # 42 measured; was 155 (our traceback per rank, twice)


def test_the_in_process_launcher_keeps_a_user_error_to_its_line(tmp_path):
    """`python launch.py --nproc-per-node=2 ...`: torchrun's agent in-process, without torchrun's report."""
    missing = tmp_path / "nowhere"
    proc = run_script(sys.executable, "launch.py", "--nproc-per-node=2", "model=ocr", f"data.dir={missing}",
                      f"output.dir={tmp_path / 'o'}", env={}, timeout=300)
    assert proc.returncode == USER_ERROR_EXIT
    assert proc.stdout + proc.stderr == (f"error: data.dir={missing} does not exist: give the folder of your "
                                         "documents with data.dir=FOLDER\n")


def test_launcher_arguments():
    from docvlm import launcher

    assert launcher.split(["--nproc-per-node=2", "model=ocr", "-m"]) == ("2", ["model=ocr", "-m"])
    assert launcher.split(["model=ocr", "--nproc_per_node", "4"]) == ("4", ["model=ocr"])
    with pytest.raises(UserError, match="--nproc-per-node needs a value"):
        launcher.split(["--nproc-per-node"])
    assert launcher.requested(["--nproc-per-node=2"]) and not launcher.requested(["model=ocr"])
    assert launcher.prints_only(["--cfg", "job"]) and launcher.prints_only(["--help"])
    assert not launcher.prints_only(["-m", "model=ocr"])


def test_a_sweep_jobs_user_error_is_logged_without_traceback(monkeypatch, capsys, tmp_path):
    from docvlm.sweep import Sweep

    monkeypatch.setattr(launch, "SWEEP", Sweep())
    status = cli(monkeypatch, "-m", "model=ocr", f"data.dir={tmp_path / 'nowhere'}", "processing.max_tiles=1,2",
                 f"output.dir={tmp_path / 'sweep'}")
    out, err = capsys.readouterr()
    assert status == 1 and "Traceback" not in out + err, out + err
    assert err.count("does not exist: give the folder of your documents") == 2  # one line a job
    assert (out + err).count(f"FAILED: data.dir={tmp_path / 'nowhere'} does not exist") == 2  # the table


def test_every_rank_learns_whether_a_failure_was_the_users():
    from docvlm.dist import DistContext, JobFailed, _user_message, together

    user, bug = ("UserError: bad", "bad"), ("KeyError: 'x'", None)
    assert _user_message([user, user]) == "bad"  # every rank alike: the line itself
    assert _user_message([user, None]) == "bad"  # rank 0's own check
    assert _user_message([None, user]) == "rank 1: bad"  # one rank's node: say which
    assert _user_message([user, bug]) is None  # a bug anywhere: tracebacks
    def step():
        raise UserError("bad")

    with pytest.raises(JobFailed) as raised:
        together(DistContext(0, 1, 0, torch.device("cpu")), step)
    assert raised.value.user_message == "bad" and isinstance(raised.value.__cause__, UserError)
