"""`logger=mlflow` and `logger=wandb` against the real things: a local `mlflow server` read back through
MlflowClient, and W&B's offline `.wandb` files read back with W&B's own record schema. One tracker run per
run dir, across a SIGTERM and `resume=true`; bad settings end in one line before training."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from omegaconf import open_dict, read_write

from seqlab.build import build_group
from seqlab.errors import ConfigError
from seqlab.results import read_history
from tests.helpers import TINY_MNIST, sweep_cli, train_cli

LONG = "x" * 300  # a config value longer than the 250 characters Lightning's MLFlowLogger keeps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tracker_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The defaults (no tracking URI, no W&B mode from the environment); W&B's own folders and no
    telemetry, here and in the runs started from here."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home" / name.lower()))
    yield
    if "wandb" in sys.modules:  # a run started in this process must not be reused by the next test
        sys.modules["wandb"].finish()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on a SQLite store, on a free local port; stopped (its process group) at the end."""
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("mlflow_server")
    uri = f"http://127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root}/m.db"]
    command += ["--artifacts-destination", str(root / "artifacts"), "--workers", "1"]
    command += ["--host", "127.0.0.1", "--port", uri.rsplit(":", 1)[1]]
    log = open(root / "server.log", "w")  # noqa: SIM115 (open while the server runs)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 180  # its first start migrates the database: slow on a busy machine
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def wandb_records(path: Path) -> Iterator:
    """The records of a `.wandb` file, parsed with W&B's own protobuf schema (the file is W&B's LevelDB-style
    log: a 7-byte header, then 32 KiB blocks of records that each carry a 7-byte header: crc, length, type;
    wandb 0.31 has no Python reader of its own any more)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    position, parts = 7, b""
    while position + 7 <= len(data):
        if (left := 32768 - position % 32768) < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        parts += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last part of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            parts = b""
            yield record


def wandb_attempts(run_dir: Path) -> list[dict]:
    """Each offline `.wandb` file of a run dir, oldest first: its run record and its history rows."""
    attempts = []
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        attempt: dict = {"run": None, "history": []}
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                attempt["run"] = record.run
            elif kind == "history":
                row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
                attempt["history"].append(row)
        attempts.append(attempt)
    return attempts


@pytest.mark.slow
def test_mlflow_and_wandb_keep_one_run_across_a_sigterm_and_resume(
    mlflow_server: str, tmp_path: Path, data_dir: Path, tracker_env: None
) -> None:
    """logger=[csv,mlflow,wandb]: SIGTERM in epoch 1, then resume=true. The MLflow server holds one run: its
    per-step loss once per step 0..N-1, its epoch metrics in step order, the final metrics (final/<name>) equal
    to metrics.json, which is also an artifact, and the first attempt's params (a 300-character value whole).
    Both W&B offline attempts carry the one run id kept in tracker_ids.json, on a continuous step axis."""
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    args = [*TINY_MNIST, "logger=[csv,mlflow,wandb]", f"logger.mlflow.tracking_uri={mlflow_server}"]
    args.append(f"+note={LONG}")
    stop = [
        "+callbacks.stop._target_=tests.helpers.SignalAt",
        "+callbacks.stop.epoch=1",
        "+callbacks.stop.batch=1",
    ]
    stopped = train_cli([*args, *stop], run_dir, data_dir)
    assert stopped.returncode == 1, stopped.stderr[-3000:]
    assert "error: stopped by a signal at epoch 1" in stopped.stderr.strip().splitlines()[-1]
    ids = json.loads((run_dir / "tracker_ids.json").read_text())
    assert set(ids) == {"mlflow", "wandb"}
    client = MlflowClient(mlflow_server)
    assert client.get_run(ids["mlflow"]["run_id"]).info.status == "KILLED", "stopped, not failed"
    resumed = train_cli([*args, "resume=true"], run_dir, data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run_dir / "tracker_ids.json").read_text()) == ids, "the resumed run kept its ids"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = read_history(run_dir / "history.csv")
    steps = int(history[-1]["step"])  # the global step at the end of training

    experiment = client.get_experiment_by_name("mnist_rnn")  # task_name
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.run_id == ids["mlflow"]["run_id"]
    assert (run.info.status, run.info.run_name) == ("FINISHED", "run")

    def logged_steps(name: str) -> list[int]:
        return [m.step for m in client.get_metric_history(run.info.run_id, name)]

    assert logged_steps("train/loss_step") == list(range(steps)), (
        "each step once, none again after the resume"
    )
    epochs = logged_steps("train/loss")
    assert len(epochs) == len(history) and epochs == sorted(set(epochs))
    assert {k: run.data.metrics[f"final/{k}"] for k in metrics} == pytest.approx(metrics)
    tests = {k: v for k, v in metrics.items() if k.startswith("test/")}
    assert {k: run.data.metrics[k] for k in tests} == pytest.approx(tests)
    assert run.data.params["note"] == LONG and run.data.params["resume"] == "False"
    assert run.data.params["model/_target_"] == "seqlab.tasks.SequenceClassifier"
    assert Path(run.data.tags["best_checkpoint"]).parent == run_dir / "checkpoints"
    assert run.data.tags["run_dir"] == str(run_dir)
    artifact = client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path / "download"))
    assert json.loads(Path(artifact).read_text()) == metrics
    # Every record file beside it, in its own folder, as the run dir holds it at the end.
    stored = {a.path for a in client.list_artifacts(run.info.run_id)}
    stored |= {a.path for a in client.list_artifacts(run.info.run_id, ".hydra")}
    assert stored >= {
        "metrics.json",
        "history.csv",
        "machine.txt",
        ".hydra",
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
    }
    for name in ("history.csv", ".hydra/config.yaml"):
        copy = client.download_artifacts(run.info.run_id, name, str(tmp_path / "download"))
        assert Path(copy).read_bytes() == (run_dir / name).read_bytes(), name

    attempts = wandb_attempts(run_dir)
    assert len(attempts) == 2, "one offline run folder per attempt"
    assert [a["run"].run_id for a in attempts] == [ids["wandb"]["id"]] * 2
    first = attempts[0]["run"]
    assert (first.project, first.display_name, first.run_group) == ("mnist_rnn", "run", "mnist_rnn")
    assert first.job_type == "SequenceClassifier"
    rows = [row for a in attempts for row in a["history"]]
    assert [r["trainer/global_step"] for r in rows if "train/loss_step" in r] == list(range(steps))
    [final] = [r for r in attempts[1]["history"] if "final/test/acc" in r]
    assert {k: final[f"final/{k}"] for k in metrics} == pytest.approx(metrics)


@pytest.mark.slow
def test_a_sweep_logs_one_run_per_job_named_and_grouped_by_the_sweep(
    tmp_path: Path, data_dir: Path, tracker_env: None
) -> None:
    """Two jobs in one process, to a SQLite store: two MLflow runs in one experiment, two W&B runs (the
    second job does not log into the first's run), named `<sweep dir name>/<job>`, grouped by the sweep."""
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path}/mlflow.db"
    args = [*TINY_MNIST, "logger=[mlflow,wandb]", f"logger.mlflow.tracking_uri={store}", "seed=0,1"]
    result = sweep_cli(args, tmp_path / "sweep", data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("mnist_rnn").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["sweep/0", "sweep/1"]
    wandb_ids = []
    for job in (0, 1):
        ids = json.loads((tmp_path / "sweep" / str(job) / "tracker_ids.json").read_text())
        [run] = [r for r in runs if r.info.run_name == f"sweep/{job}"]
        assert run.info.run_id == ids["mlflow"]["run_id"] and run.info.status == "FINISHED"
        [attempt] = wandb_attempts(tmp_path / "sweep" / str(job))
        assert (attempt["run"].run_id, attempt["run"].display_name) == (ids["wandb"]["id"], f"sweep/{job}")
        assert attempt["run"].run_group == "sweep"
        wandb_ids.append(ids["wandb"]["id"])
    assert wandb_ids[0] != wandb_ids[1]


@pytest.mark.slow  # two real runs in processes of their own: ~12 s
def test_ids_are_kept_in_the_run_dir_and_a_second_start_reuses_them(
    make_cfg, tmp_path: Path, tracker_env: None
) -> None:
    """A local SQLite store and an offline W&B run: the first start writes both run ids to tracker_ids.json,
    a second start in the same run dir (a resume, a requeue) logs to the same runs; MLflow's params keep
    their first values (MLflow's cannot change) and the store holds one run."""
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    from mlflow.tracking import MlflowClient

    def start(*overrides: str) -> list:
        cfg = make_cfg("logger=[mlflow,wandb]", f"paths.log_dir={tmp_path}", *overrides)
        loggers = build_group(cfg, "logger")
        for logger in loggers:
            logger.log_hyperparams({"seed": 0, "resume": "resume=true" in overrides, "note": LONG})
        return loggers

    first = start()
    ids = json.loads((tmp_path / "run" / "tracker_ids.json").read_text())
    assert ids["mlflow"]["run_id"] == first[0].run_id and ids["wandb"]["id"] == first[1].experiment.id
    assert ids["mlflow"]["tracking_uri"] == f"sqlite:///{tmp_path}/mlflow.db"
    assert ids["wandb"]["mode"] == "offline"
    first[1].experiment.finish()
    second = start("resume=true")
    assert second[0].run_id == ids["mlflow"]["run_id"] and second[1].experiment.id == ids["wandb"]["id"]
    client = MlflowClient(ids["mlflow"]["tracking_uri"])
    [run] = client.search_runs([ids["mlflow"]["experiment_id"]])
    assert run.data.params == {"seed": "0", "resume": "False", "note": LONG}
    where = client.get_experiment(ids["mlflow"]["experiment_id"]).artifact_location
    assert where == (tmp_path / "mlartifacts").as_uri(), "artifacts beside the SQLite store, not in ./mlruns"
    second[1].experiment.finish()
    unknown = {**ids, "mlflow": {**ids["mlflow"], "run_id": "0" * 32}}  # e.g. the run was deleted
    (tmp_path / "run" / "tracker_ids.json").write_text(json.dumps(unknown))
    with pytest.raises(ConfigError, match=f"tracker_ids.json names MLflow run {'0' * 32}, which sqlite:///"):
        start("resume=true")


def test_several_loggers_compose_and_default_to_local_offline_stores(
    make_cfg, tmp_path: Path, tracker_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`logger=[tensorboard,mlflow,wandb]` builds all three; MLflow logs to the SQLite database under the
    outputs root (or $MLFLOW_TRACKING_URI), W&B offline (or $WANDB_MODE); both named after the run."""
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    from lightning.pytorch.loggers import TensorBoardLogger

    from seqlab.trackers import MLflowLogger, WandbLogger

    cfg = make_cfg("logger=[tensorboard,mlflow,wandb]", f"paths.log_dir={tmp_path}")
    assert cfg.logger.mlflow.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert (cfg.logger.wandb.mode, cfg.logger.wandb.project) == ("offline", cfg.task_name)
    tensorboard, mlflow, wandb = build_group(cfg, "logger")
    assert isinstance(tensorboard, TensorBoardLogger)
    assert isinstance(mlflow, MLflowLogger) and mlflow._run_name == "run"
    assert isinstance(wandb, WandbLogger) and wandb._wandb_init["name"] == "run"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = make_cfg("logger=[mlflow,wandb]")
    assert (cfg.logger.mlflow.tracking_uri, cfg.logger.wandb.mode) == ("sqlite:///elsewhere.db", "disabled")


def test_a_sweep_job_is_named_and_grouped_by_its_sweep(make_cfg, tmp_path: Path, tracker_env: None) -> None:
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    from hydra.core.hydra_config import HydraConfig

    sweep = tmp_path / "mnist_cells"
    cfg = make_cfg("logger=[mlflow,wandb]", f"paths.log_dir={tmp_path}", output_dir=sweep / "3")
    with open_dict(cfg.hydra), read_write(cfg.hydra):
        cfg.hydra.mode = "MULTIRUN"
        cfg.hydra.sweep.dir = str(sweep)
    HydraConfig().set_config(cfg)
    mlflow, wandb = build_group(cfg, "logger")
    assert mlflow._run_name == wandb._wandb_init["name"] == "mnist_cells/3"
    assert wandb._wandb_init["group"] == "mnist_cells"
    assert mlflow._experiment_name == wandb._wandb_init["project"] == cfg.task_name


def bad_setting(make_cfg, *overrides: str) -> str:
    with pytest.raises(ConfigError) as err:
        build_group(make_cfg(*overrides), "logger")
    message = str(err.value)
    assert "\n" not in message
    return message


def test_bad_tracker_settings_are_named_in_one_line(
    make_cfg, tmp_path: Path, tracker_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    port = free_port()  # nothing listens there
    message = bad_setting(make_cfg, "logger=mlflow", f"logger.mlflow.tracking_uri=http://127.0.0.1:{port}")
    assert f"logger.mlflow.tracking_uri=http://127.0.0.1:{port}: no MLflow server answers there" in message
    assert "mlflow server --backend-store-uri" in message
    message = bad_setting(make_cfg, "logger=mlflow", f"logger.mlflow.tracking_uri=file:{tmp_path}/mlruns")
    assert "MLflow 3 refuses its old file store" in message and "sqlite:///" in message
    for project, bad in (("a/b", "/"), ("what?", "?"), ("x:y%", "% :")):
        message = bad_setting(make_cfg, "logger=wandb", f"logger.wandb.project='{project}'")
        assert f"logger.wandb.project='{project}': a W&B project name holds {bad}" in message
    message = bad_setting(make_cfg, "logger=wandb", "logger.wandb.mode=sometimes")
    assert message.startswith("logger.wandb.mode='sometimes' (or WANDB_MODE): W&B knows online, offline")
    for package in ("mlflow", "wandb"):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, package, None)  # as if it were not installed
            message = bad_setting(make_cfg, f"logger={package}", f"paths.log_dir={tmp_path}")
        assert f"logger={package} needs the {package} package" in message
        assert f"pip install 'seqlab[{package}]'" in message


@pytest.mark.slow
def test_an_unreachable_server_ends_the_run_in_one_line_before_training(
    tmp_path: Path, data_dir: Path, tracker_env: None
) -> None:
    pytest.importorskip("mlflow")
    port = free_port()
    args = [*TINY_MNIST, "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri=http://127.0.0.1:{port}"]
    result = train_cli(args, tmp_path / "run", data_dir)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: logger.mlflow.tracking_uri=http://127.0.0.1:{port}: no MLflow server")
    assert not (tmp_path / "run" / "checkpoints").exists(), "nothing was trained"
