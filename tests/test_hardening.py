"""What comes from outside the config: failing sweep jobs, a damaged checkpoint on resume, binary input."""

import json
import logging
import subprocess
from pathlib import Path

import pytest
import torch

from seqlab import pipeline
from seqlab.data.text import decode_utf8
from seqlab.errors import ConfigError, DataError
from seqlab.results import read_history
from tests.helpers import seqlab_cli, train_cli

LIMIT = ["experiment=mnist_rnn", "debug=limit", "data.val_size=40", "data.batch_size=16"]


@pytest.mark.slow
def test_a_sweep_with_failing_jobs_runs_the_others_and_ends_in_one_line_per_failed_job(tmp_path, data_dir):
    sweep_dir = tmp_path / "sweep"
    args = ["-m", f"paths.data_dir={data_dir}", f"hydra.sweep.dir={sweep_dir}", *LIMIT, "print_config=false"]
    result = seqlab_cli("train", *args, "trainer.enable_progress_bar=false", "model.net.hidden_dim=4,-1,0")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    report = result.stderr[result.stderr.index("error: ") :].strip().splitlines()
    assert report[0] == f"error: 2 of 3 jobs failed; see {sweep_dir / 'summary.md'}"
    assert report[1].startswith("  job 1 (model.net.hidden_dim=-1): ConfigError: model.net: hidden_dim=-1")
    assert report[2].startswith("  job 2 (model.net.hidden_dim=0): ConfigError:")
    assert report[3:] == ["", "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace."]
    assert (sweep_dir / "0" / "metrics.json").is_file()  # the good job ran to its end
    summary = (sweep_dir / "summary.md").read_text()
    assert "| 0 | done |" in summary and "| 1 | failed |" in summary and "| 2 | failed |" in summary


def test_resume_with_a_damaged_last_checkpoint_continues_from_the_newest_intact_one(
    make_cfg, tmp_path, caplog
):
    run_dir = tmp_path / "run"
    pipeline.train(make_cfg(*LIMIT, output_dir=run_dir))
    (run_dir / "metrics.json").unlink()  # as a run stopped before its end leaves it
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(b"PK\x03\x04 half a checkpoint")
    [intact] = (run_dir / "checkpoints").glob("epoch_*.ckpt")
    with caplog.at_level(logging.WARNING):
        _, metrics = pipeline.train(
            make_cfg(*LIMIT, "resume=true", "trainer.max_epochs=3", output_dir=run_dir)
        )
    assert f"resume: {last} is damaged" in caplog.text and f"resuming from {intact}" in caplog.text
    assert (run_dir / "checkpoints" / "last.ckpt.damaged").read_bytes() == b"PK\x03\x04 half a checkpoint"
    assert (
        torch.load(last, weights_only=True)["epoch"] == 2
    )  # resumed after epoch 1's checkpoint, ran epoch 2
    assert json.loads((run_dir / "metrics.json").read_text()) == pytest.approx(metrics)


def test_resume_with_no_intact_checkpoint_names_the_files(make_cfg, tmp_path):
    run_dir = tmp_path / "run"
    pipeline.train(make_cfg(*LIMIT, output_dir=run_dir))
    (run_dir / "metrics.json").unlink()
    for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
        ckpt.write_bytes(b"garbage")
    with pytest.raises(
        ConfigError,
        match=r"resume: no intact checkpoint in .*: last.ckpt: not a readable .*; epoch_\d+.ckpt cannot be read",
    ):
        pipeline.train(make_cfg(*LIMIT, "resume=true", output_dir=run_dir))
    assert (run_dir / "checkpoints" / "last.ckpt").read_bytes() == b"garbage"  # nothing moved or deleted


@pytest.mark.parametrize(
    "raw", [bytes(range(256)) * 40, "a review\n".encode("utf-16"), b"\x89PNG\r\n\x1a\n" + bytes(400)]
)
def test_bytes_that_are_not_text_are_refused(tmp_path, raw):
    with pytest.raises(DataError, match=r"is not text: \d+ invalid UTF-8 sequence\(s\) and \d+ NUL byte"):
        decode_utf8(raw, tmp_path / "reviews.txt")


def test_text_with_a_few_bad_bytes_is_read_with_them_replaced_and_one_warning(tmp_path, caplog):
    """The tolerant side of the threshold: a review file from an editor that slipped a few Latin-1 bytes
    in, or one NUL, reads (bad bytes as U+FFFD), with one warning counting them."""
    raw = ("a fine film, r\u00e9ally\n" * 50).encode("utf-8") + b"caf\xe9 \xff\x00 end\n"
    with caplog.at_level(logging.WARNING):
        text = decode_utf8(raw, tmp_path / "reviews.txt")
    assert text.endswith("caf\ufffd \ufffd\x00 end\n") and text.count("r\u00e9ally") == 50
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning == f"{tmp_path / 'reviews.txt'}: 2 invalid UTF-8 byte sequence(s) replaced with U+FFFD"


def test_resume_without_last_ckpt_takes_the_newest_intact_of_several(tmp_path, caplog):
    """Several checkpoints beside a missing last.ckpt: the newest that reads, not the first found."""
    import os

    from seqlab.rundir.resume import intact_checkpoint

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for age, name in enumerate(["epoch_003.ckpt", "epoch_002.ckpt", "epoch_001.ckpt", "epoch_000.ckpt"]):
        path = folder / name
        if name == "epoch_003.ckpt":
            path.write_bytes(b"cut short")  # the newest, damaged
        else:
            torch.save({"state_dict": {}, "seqlab": {"epoch": name}}, path)
        os.utime(path, (1_000_000 - age * 100, 1_000_000 - age * 100))
    with caplog.at_level(logging.WARNING):
        chosen, checkpoint = intact_checkpoint(folder / "last.ckpt")
    assert chosen.name == "epoch_002.ckpt" and checkpoint["seqlab"]["epoch"] == "epoch_002.ckpt"
    assert (folder / "epoch_003.ckpt").read_bytes() == b"cut short"  # kept, not deleted


HISTORY = "epoch,step,train/loss,val/acc\r\n0,3,2.25,0.125\r\n1,6,2.0,0.25\r\n"


@pytest.mark.parametrize(
    ("damage", "line", "whole"),
    [
        (HISTORY[:-5], 3, 1),  # cut inside the last row
        (HISTORY[:-2], 3, 1),  # cut after its last digit: the row may be short of digits
        (HISTORY[:20], 1, 0),  # cut inside the header
        (HISTORY.replace("2.0", "2.0,9"), 3, 1),  # a field too many
        (HISTORY.replace("0.125", "abc"), 2, 0),  # not a number
        (HISTORY.replace("1,6", ",6"), 3, 1),  # no epoch
    ],
)
def test_a_damaged_history_is_named_with_the_whole_rows_before_the_damage(tmp_path, damage, line, whole):
    from seqlab.results import DamagedHistory

    path = tmp_path / "history.csv"
    path.write_text(HISTORY)
    assert [r["epoch"] for r in read_history(path)] == [0.0, 1.0]
    path.write_text(damage)
    with pytest.raises(DamagedHistory, match=f"history.csv: line {line} is not a whole row") as err:
        read_history(path)
    assert len(err.value.rows) == whole


@pytest.mark.slow
def test_a_resume_past_a_damaged_history_keeps_it_aside_and_carries_its_whole_rows(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    assert train_cli([*LIMIT, "trainer.max_epochs=2"], run_dir, data_dir).returncode == 0
    history = run_dir / "history.csv"
    damaged = history.read_bytes()[:-9]  # epoch 1's row cut short
    history.write_bytes(damaged)
    (run_dir / "metrics.json").unlink()
    resumed = train_cli([*LIMIT, "trainer.max_epochs=3", "resume=true"], run_dir, data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (
        "line 3 is not a whole row of numbers (cut short or edited); kept as history.csv.damaged, its 1 "
        in (resumed.stderr)
    )
    assert (run_dir / "history.csv.damaged").read_bytes() == damaged
    assert [int(r["epoch"]) for r in read_history(history)] == [0, 2]


@pytest.mark.slow
def test_predict_refuses_a_binary_file_in_one_line(tmp_path):
    binary = tmp_path / "photo.jpg"
    binary.write_bytes(bytes(range(256)) * 160)
    result = seqlab_cli("predict", f"ckpt_path={tmp_path / 'any.ckpt'}", f"file={binary}", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {binary} is not text: 20480 invalid UTF-8 sequence(s) and 160 NUL byte(s) in 40960 bytes; "
        "give a UTF-8 text or CSV file"
    ]


@pytest.fixture
def verified_data(tmp_path, monkeypatch):
    """A PTB folder whose files carry their published md5s (patched to the tiny files' own), with the
    check switched on and its cache under tmp_path."""
    from seqlab.data import files, ptb
    from tests.conftest import make_ptb

    root = make_ptb(tmp_path / "data")
    monkeypatch.setattr(ptb, "FILES", {n: files.md5sum(root / "ptb" / n) for n in ptb.FILES})
    monkeypatch.setattr(files, "_warned", set())
    monkeypatch.setattr(files, "_hashed", {})
    return root


def test_data_files_are_checked_against_their_checksums_once_a_process(verified_data, monkeypatch, caplog):
    import logging

    from seqlab.data import files
    from seqlab.data.ptb import PTBDataModule

    hashed = []
    md5sum = files.md5sum
    monkeypatch.setattr(files, "md5sum", lambda path: hashed.append(path.name) or md5sum(path))
    PTBDataModule(str(verified_data)).prepare_data()  # all match
    PTBDataModule(str(verified_data)).prepare_data()
    assert sorted(hashed) == sorted(["ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"])  # once each

    test_file = verified_data / "ptb" / "ptb.test.txt"
    test_file.write_text(" the other corpus <unk>\n" * 50)  # another corpus under the same name
    with caplog.at_level(logging.WARNING):
        PTBDataModule(str(verified_data)).prepare_data()
    assert hashed[3:] == ["ptb.test.txt"]  # a changed file is hashed again
    [warning] = [r.getMessage() for r in caplog.records if "published" in r.getMessage()]
    assert warning.startswith(
        f"Penn Treebank file {test_file} has md5 {md5sum(test_file)}, not the published "
    )
    with pytest.raises(DataError, match=r"ptb.test.txt has md5 [0-9a-f]+, not the published"):
        PTBDataModule(str(verified_data), verify="strict").prepare_data()
    PTBDataModule(str(verified_data), verify="off").prepare_data()
    with pytest.raises(ValueError, match=r"verify='sometimes' is not supported; allowed: warn, strict, off"):
        PTBDataModule(str(verified_data), verify="sometimes")


@pytest.fixture
def tmpfs(tmp_path):
    """Mounts a real tmpfs with the given options (`size=..`, `ro`) under tmp_path; unmounted afterwards."""
    mounted = []

    def mount(options: str) -> Path:
        folder = tmp_path / f"mnt{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (root needed): {done.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=False)


def train_in(run_dir: Path, data_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}", *LIMIT, "print_config=false"]
    return seqlab_cli("train", *args, "trainer.enable_progress_bar=false", *extra)


def last_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_a_run_dir_under_a_file_is_one_line(tmp_path, data_dir):
    (tmp_path / "file").write_text("not a folder")
    line = last_line(train_in(tmp_path / "file" / "run", data_dir))
    assert line == (
        f"error: cannot create the run dir: {tmp_path / 'file' / 'run'}: Not a directory (ENOTDIR); "
        "a part of that path is a file, not a folder: choose another path"
    )


@pytest.mark.slow
def test_a_file_where_the_checkpoints_folder_goes_is_one_line_and_stays(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoints").write_text("my notes")
    line = last_line(train_in(run_dir, data_dir))
    assert line == (
        f"error: {run_dir / 'checkpoints'}: File exists (EEXIST); "
        "a file stands where a folder is needed: move it away, or choose another path"
    )
    assert (run_dir / "checkpoints").read_text() == "my notes"


@pytest.mark.slow
@pytest.mark.parametrize("multirun", [False, True])
def test_a_read_only_file_system_is_one_line(tmpfs, data_dir, multirun):
    read_only = tmpfs("ro,size=1m")
    target = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    extra = ["-m", "model.net.hidden_dim=4,8"] if multirun else []
    result = seqlab_cli(
        "train", *extra, f"{target}={read_only / 'out'}", f"paths.data_dir={data_dir}", *LIMIT
    )
    assert last_line(result) == (
        f"error: cannot create the {'sweep' if multirun else 'run'} dir: {read_only / 'out'}: Read-only file system (EROFS); the file system "
        "is read-only: write elsewhere (paths.log_dir=..., hydra.run.dir=...)"
    )


@pytest.mark.slow
def test_a_full_disk_stops_the_run_in_one_line_and_leaves_no_partial_file(tmpfs, data_dir):
    full = tmpfs("size=200k")  # room for the config and logs, not for a checkpoint
    line = last_line(train_in(full / "run", data_dir))
    assert line.startswith(f"error: {full / 'run' / 'checkpoints'}/") and "(ENOSPC); free some space" in line
    assert not list((full / "run").rglob("*.tmp")) and not list((full / "run").rglob("*.ckpt"))
    assert (full / "run" / ".hydra" / "config.yaml").is_file()  # what was written before stays


def test_a_checkpoint_write_cut_short_keeps_the_previous_one(tmp_path, monkeypatch):
    from seqlab import build as checkpoints

    path = tmp_path / "last.ckpt"
    checkpoints.AtomicCheckpointIO().save_checkpoint({"step": 1}, path)

    def half_then_fail(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(checkpoints.torch, "save", half_then_fail)
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda p: type("usage", (), {"free": 0})())
    with pytest.raises(OSError) as err:
        checkpoints.AtomicCheckpointIO().save_checkpoint({"step": 2}, path)
    assert err.value.errno == 28 and err.value.filename == str(path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1} and [p.name for p in tmp_path.iterdir()] == [
        path.name
    ]


@pytest.mark.slow
@pytest.mark.parametrize("validation", [False, True])
def test_an_allocator_refusal_is_one_line_naming_the_phase_and_the_batch_size(tmp_path, data_dir, validation):
    batch = 0 if validation else 1  # 40 validation images make one batch of eval_batch_size 1000
    stop = ["+callbacks.oom._target_=tests.helpers.AllocateTooMuchAt", f"+callbacks.oom.batch={batch}"]
    result = train_in(tmp_path / "run", data_dir, *stop, f"+callbacks.oom.validation={validation}")
    phase, key = ("validate", "data.eval_batch_size=1000") if validation else ("train", "data.batch_size=16")
    assert last_line(result) == (
        f"error: out of memory in {phase} at epoch 0 with {key} (can't allocate memory: you tried to allocate "
        f"1125899906842624 bytes. Error code 12 (Cannot allocate memory)); lower {key.split('=')[0]}, or model sizes"
    )


def test_a_language_model_batch_that_cannot_fit_is_refused_before_training(make_cfg, tmp_path):
    cfg = make_cfg("experiment=ptb_lab", "data.batch_size=3000000", "data.seq_len=35", "debug=fdr")
    with pytest.raises(ConfigError) as err:
        pipeline.train(cfg)
    message = str(err.value)
    assert message.startswith(
        "data.batch_size=3000000 x data.seq_len=35 tokens a batch (logits over 15 words) need about "
    )
    assert message.endswith("lower data.batch_size (or data.eval_batch_size, data.seq_len)")
    assert not (tmp_path / "run" / "checkpoints").exists()


def write_each_record(kind: str, folder: Path, version: int) -> Path:
    """Write one of a run's or a sweep's records the way seqlab does; `version` changes its content."""
    from types import SimpleNamespace

    from seqlab.callbacks.history import EpochHistory
    from seqlab.rundir.records import record_failure, write_metrics
    from seqlab.sweeps.summary import summarize

    if kind == "metrics.json":
        return write_metrics({"val/acc": version / 10}, folder)
    if kind == "history.csv":
        trainer = SimpleNamespace(
            sanity_checking=False,
            is_global_zero=True,
            current_epoch=version,
            global_step=10 * version,
            callback_metrics={"val/acc": torch.tensor(version / 10)},
            default_root_dir=str(folder),
            fit_loop=SimpleNamespace(
                epoch_loop=SimpleNamespace(
                    batch_progress=SimpleNamespace(current=SimpleNamespace(processed=3))
                )
            ),
        )
        EpochHistory().on_train_epoch_end(trainer, None)
        return folder / "history.csv"
    if kind == "error.json":
        record_failure(folder, ValueError(f"attempt {version}"))
        return folder / "error.json"
    job = folder / "0"
    (job / ".hydra").mkdir(parents=True, exist_ok=True)
    records = {
        ".hydra/config.yaml": "optimized_metric: val/acc\n",
        "metrics.json": f'{{"val/acc": {version / 10}}}',
    }
    for name, text in records.items():
        with open(job / name, "w") as f:  # the job's own files, not the write this test cuts short
            f.write(text)
    summarize(folder, plots=False)
    return folder / "summary.md"


@pytest.mark.parametrize("kind", ["metrics.json", "history.csv", "error.json", "summary.md"])
def test_each_record_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch, kind):
    """A write cut short half way (a full disk) leaves the previous complete record and no temporary file."""
    before = write_each_record(kind, tmp_path, 1).read_text()
    real_write = Path.write_bytes

    def half_then_full(self, data, *args, **kwargs):
        if not self.name.startswith(f".{kind}."):  # only this record's own write (summary.csv goes first)
            return real_write(self, data, *args, **kwargs)
        real_write(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        write_each_record(kind, tmp_path, 2)
    monkeypatch.undo()
    assert (tmp_path / kind).read_text() == before
    assert not list(tmp_path.rglob("*.tmp"))
    assert write_each_record(kind, tmp_path, 2).read_text() != before  # and a later write goes through


def test_a_full_disk_during_a_checkpoint_flush_names_the_checkpoint(tmp_path, monkeypatch):
    """ENOSPC from fsync (no file name in the error) was reported without the path."""
    from seqlab.build import AtomicCheckpointIO
    from seqlab.errors import os_error_message

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full)
    target = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.raises(OSError) as err:
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, target)
    assert os_error_message(err.value) == (
        f"{target}: No space left on device (ENOSPC); free some space there, or write elsewhere "
        "(paths.log_dir=..., hydra.run.dir=...)"
    )
    assert not target.exists() and not list(target.parent.glob("*.tmp"))


@pytest.mark.slow
def test_a_missing_file_on_a_read_only_data_dir_is_named(tmpfs, data_dir):
    """The error blamed MNIST/.raw.lock (EROFS) instead of naming the missing file."""
    import shutil

    folder = tmpfs("size=64m")
    shutil.copytree(data_dir / "MNIST", folder / "MNIST")
    gone = next((folder / "MNIST" / "raw").glob("t10k-labels*"))
    gone.unlink()
    remount = subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True)
    assert remount.returncode == 0, remount.stderr
    result = seqlab_cli("train", f"paths.data_dir={folder}", f"hydra.run.dir={folder.parent / 'run'}", *LIMIT)
    line = last_line(result)
    assert line.startswith(f"error: MNIST data: {gone.name.removesuffix('.gz')}") or gone.name in line, line
    assert f"missing in {folder / 'MNIST' / 'raw'}, which cannot be written" in line and "(EROFS)" in line
    assert ".lock" not in line


def test_mnist_files_are_checked_against_their_published_md5s(make_cfg, monkeypatch, tmp_path, caplog):
    """The tiny test MNIST is not the published one: strict refuses it naming a file, warn says so once."""
    import logging

    from seqlab import pipeline
    from seqlab.data import files

    monkeypatch.setattr(files, "_warned", set())  # once a process: this test's own first time
    with pytest.raises(DataError, match=r"^MNIST file .*-ubyte\.gz has md5 [0-9a-f]{32}, not the published"):
        pipeline.train(make_cfg(*LIMIT, "data.verify=strict"))
    with caplog.at_level(logging.WARNING):
        pipeline.train(make_cfg(*LIMIT, "data.verify=warn", output_dir=tmp_path / "w"))
    assert "MNIST file" in caplog.text and "not the published" in caplog.text
