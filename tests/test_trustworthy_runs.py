"""Issue 20: a wrong result is never silent. Resume reuses only records of the same files and settings,
the output folder is excluded by identity, failures are summed up on the console (and may fail the
exit status), odd names never stop a run, no temp file is left behind, one run at a time per output.dir."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from docvlm import fingerprint, outputs
from docvlm.config import RunConfig
from docvlm.errors import UserError
from docvlm.lock import OutputLock
from docvlm.paths import REPO_ROOT
from docvlm.records import DocumentRecord
from test_resume import FAST, N_DOCS, cache, corpus, launch, ok, part_records  # noqa: F401


def _config(**model: object) -> RunConfig:
    cfg = RunConfig()
    cfg.data.dir = "data"
    for key, value in model.items():
        setattr(cfg.model, key, value)
    return cfg


def _ocr() -> RunConfig:
    return _config(name="ocr", family="ocr", path="builtin")


# ---------------------------------------------------------------- 1. fingerprints


def test_settings_that_change_answers_are_named_and_others_are_not():
    tiny = _config(name="tiny_internvl", path="/models/tiny")
    other = _config(name="tiny_internvl", path="/models/tiny")
    other.processing.batch_size, other.processing.shard, other.processing.max_retries = 7, "cost", 3  # speed only
    assert fingerprint.run_settings(tiny) == fingerprint.run_settings(other)
    other.processing.max_new_tokens.extract = 5
    other.processing.shared_prefill = False
    text = fingerprint.differences(fingerprint.run_settings(tiny), fingerprint.run_settings(other))
    assert text == ("processing.max_new_tokens.extract: 768 there, 5 now; "
                    "processing.shared_prefill: True there, False now")
    text = fingerprint.differences(fingerprint.run_settings(_ocr()), fingerprint.run_settings(tiny))
    assert text.startswith("model.name: 'ocr' there, 'tiny_internvl' now; model.family: 'ocr' there, 'internvl' now")


def test_a_folder_with_records_of_other_settings_stops_the_run(tmp_path):
    ocr, tiny = fingerprint.run_settings(_ocr()), fingerprint.run_settings(_config(name="tiny_internvl"))
    fingerprint.check_output_settings(tmp_path, tiny)  # nothing recorded: any settings may start
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "rank-00000.jsonl").write_text("")
    fingerprint.check_output_settings(tmp_path, tiny)  # a crash before the first record: still nothing
    (tmp_path / "parts" / "rank-00000.jsonl").write_text('{"index": 0, "image": "a.png"}\n')
    with pytest.raises(UserError, match="older docvlm"):
        fingerprint.check_output_settings(tmp_path, tiny)
    fingerprint.write_settings(tmp_path, ocr)
    fingerprint.check_output_settings(tmp_path, ocr)
    with pytest.raises(UserError) as err:
        fingerprint.check_output_settings(tmp_path, tiny)
    message = str(err.value)
    assert "\n" not in message and "model.name: 'ocr' there, 'tiny_internvl' now" in message
    assert "output.overwrite=true" in message and "another output.dir" in message


def test_rerun_with_other_settings_stops_and_a_changed_file_is_redone(corpus, cache, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(corpus, data)
    ok(launch(2, data, out, cache=cache))
    parts_before = part_records(out)

    refused = launch(1, data, out, "processing.max_new_tokens.extract=25", cache=cache)
    assert refused.returncode != 0
    assert "processing.max_new_tokens.extract: 24 there, 25 now" in refused.stderr
    assert "output.overwrite=true" in refused.stderr
    assert part_records(out) == parts_before  # nothing was touched

    changed = sorted(p.name for p in data.glob("*.png"))[0]
    Image.open(data / changed).rotate(180).save(data / changed)  # other bytes, same name
    ok(launch(1, data, out, cache=cache))  # another number of ranks: the other records are kept
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed_this_run"] == 1
    redone = [r for r in part_records(out) if r["image"] == changed]
    assert len(redone) == 2 and redone[0]["document_fingerprint"] != redone[1]["document_fingerprint"]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == N_DOCS and next(r for r in rows if r["image"] == changed) == redone[1]


def test_resume_ignores_records_of_another_file_version_even_with_more_attempts(tmp_path):
    stale = DocumentRecord(index=0, image="a.png", attempts=2, document_fingerprint="old", settings_fingerprint="s")
    fresh = DocumentRecord(index=0, image="a.png", attempts=1, document_fingerprint="new", settings_fingerprint="s")
    with outputs.PartWriter(tmp_path, 1) as part:
        part.write(stale)
    with outputs.PartWriter(tmp_path, 0) as part:
        part.write(fresh)
    belongs = lambda r: r.document_fingerprint == "new" and r.settings_fingerprint == "s"  # noqa: E731
    assert outputs.read_parts(tmp_path, belongs)["a.png"].document_fingerprint == "new"
    assert outputs.read_parts(tmp_path)["a.png"].document_fingerprint == "old"  # without the check: the stale one


# ---------------------------------------------------------------- 2. output inside input


def test_output_inside_data_hides_only_itself_and_the_data_folder_itself_is_refused(tmp_path):
    from docvlm.run import _check_output_dir, _find_inputs

    data = tmp_path / "data"
    for name in ("a.png", "out/plot.png", "2024/out/inner.png"):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(data / name)
    cfg = _ocr()
    cfg.data.dir = str(data)
    _, docs = _find_inputs(cfg, None, data / "out")
    assert [d.id for d in docs] == ["2024/out/inner.png", "a.png"]
    with pytest.raises(UserError, match="is the data folder"):
        _check_output_dir(cfg, tmp_path / "elsewhere" / ".." / "data")
    assert not (data / "logs").exists()  # refused before anything was written there


# ---------------------------------------------------------------- 3. summary, 5. clashing ids


def test_console_summary_counts_and_fail_on_errors_sets_the_exit_status(corpus, cache, tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    shutil.copytree(corpus, data)
    (data / "empty.png").write_bytes(b"")
    (data / "notes.png").write_text("not an image\n")
    Image.new("RGB", (64, 64), (255, 255, 255)).save(data / "x.pdf", "PDF", resolution=72)
    shutil.copy(data / "empty.png", data / "x.pdf#page=1")  # x.pdf's page 1 has this id too

    failed = launch(2, data, out, "processing.fail_on_errors=true", cache=cache)
    assert failed.returncode != 0
    total = N_DOCS + 4
    assert f"{total} documents: {total - 3} done, 3 failed, 0 skipped (recorded by an earlier run)" in failed.stdout
    assert "failed: " in failed.stdout and "empty_file 1" in failed.stdout and "unsupported_format 1" in failed.stdout
    assert "  notes.png: not_an_image (load): " in failed.stdout
    assert "random weights: its answers are meaningless" in failed.stdout
    line = next(line for line in failed.stderr.splitlines() if "3 of 8 documents failed" in line)
    assert "processing.fail_on_errors=true" in line and "rank 0:" not in line
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    ids = [r["image"] for r in rows]
    assert len(ids) == total and "x.pdf#page=1" in ids and "x.pdf#page=1#duplicate=2" in ids

    again = ok(launch(1, data, out, cache=cache))  # default: errors are records, exit 0
    assert f"{total} documents: 0 done, 3 failed, {total - 3} skipped" in again.stdout


# ---------------------------------------------------------------- 6. temp files, lock


@pytest.mark.parametrize("text", ["fine", "\udcff"], ids=["rename-fails", "encoding-fails"])
def test_a_failed_atomic_write_leaves_no_temp_file_and_names_the_path(tmp_path, text):
    target = tmp_path / "results.jsonl"
    if text == "fine":
        target.mkdir()  # the rename onto a folder fails, after the temp file was written
    with pytest.raises((OSError, UnicodeError)) as err:
        outputs.atomic_write_text(target, text)
    if isinstance(err.value, OSError):
        assert str(target) in str(err.value)
    assert [p.name for p in tmp_path.iterdir()] == (["results.jsonl"] if text == "fine" else [])


def test_a_part_file_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    with outputs.PartWriter(tmp_path, 3) as part:
        def disk_full(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", disk_full)
        with pytest.raises(OSError, match=r"cannot write .*parts/rank-00003\.jsonl: No space left on device"):
            part.write(DocumentRecord(index=0, image="a.png"))


def test_the_lock_names_its_holder_and_is_free_again_after_release(tmp_path):
    first, second = OutputLock(tmp_path), OutputLock(tmp_path)
    first.acquire()
    with pytest.raises(UserError, match=rf"in use by another docvlm run \(pid {os.getpid()} on "):
        second.acquire()
    first.release()
    second.acquire()
    assert second.held
    second.release()


def test_a_second_run_into_the_same_folder_stops_at_once_and_a_killed_run_leaves_no_stale_lock(
        corpus, cache, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO_ROOT / "launch.py"), f"data.dir={corpus}", f"output.dir={out}", *FAST]
    env = {**os.environ, "DOCVLM_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "DOCVLM_FAULTS": "hang:after=1"}
    first = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not _records(out) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _records(out) == 1, "the first run should hang after its first record"

        second = launch(2, corpus, out, "output.overwrite=true", cache=cache)
        assert second.returncode != 0
        line = next(line for line in second.stderr.splitlines() if "is in use by another docvlm run" in line)
        assert f"(pid {first.pid} on " in line and "rank 0:" not in line  # every rank stops with the same line
        assert _records(out) == 1  # overwrite=true deleted nothing
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()

    ok(launch(2, corpus, out, cache=cache))  # the killed run's lock died with it
    assert len(part_records(out)) == N_DOCS


def _records(out: Path) -> int:
    try:
        return sum(len(p.read_text().splitlines()) for p in (out / "parts").glob("rank-*.jsonl"))
    except OSError:
        return 0
