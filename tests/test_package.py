"""seqlab as a user gets it: its wheel and the example project (examples/parity_lab) installed, not
editable, into a fresh virtualenv, and every command run from an empty directory."""

import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import make_mnist
from tests.helpers import REPO, documented_project

pytestmark = pytest.mark.slow

TOP_LEVEL_SKIP = {".venv", ".git", "outputs", "data", "bench", "build", "dist"}


def skip(folder: str, names: list[str]) -> set[str]:
    """What copying a checkout leaves out: run outputs and environments at its top, caches anywhere."""
    top = set(names) & TOP_LEVEL_SKIP if Path(folder) == REPO else set()
    return top | {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """`python -m build` on a copy of the checkout (building writes into the tree it builds)."""
    root = tmp_path_factory.mktemp("build")
    shutil.copytree(REPO, root / "seqlab", symlinks=True, ignore=skip)
    built = run([sys.executable, "-m", "build", "--outdir", root / "dist", root / "seqlab"])
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return root / "dist"


@pytest.fixture(scope="module")
def venv(tmp_path_factory, dist) -> Path:
    """A fresh virtualenv with the CPU torch, seqlab's wheel and the example project (not editable)."""
    root = tmp_path_factory.mktemp("venv")
    shutil.copytree(REPO / "examples" / "parity_lab", root / "parity_lab", ignore=skip)
    assert run([sys.executable, "-m", "venv", root / "venv"]).returncode == 0
    pip = [root / "venv" / "bin" / "python", "-m", "pip", "install", "-q"]
    for packages in (["torch==2.13.0"], [next(dist.glob("*.whl")), root / "parity_lab"]):
        installed = run([*pip, *packages])
        assert installed.returncode == 0, installed.stderr[-3000:]
    return root / "venv"


@pytest.fixture
def user(venv, tmp_path):
    """Runs a `seqlab-*` command from an empty directory, with the venv first on PATH and tiny MNIST."""
    work = tmp_path / "work"
    work.mkdir()
    data = make_mnist(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEQLAB_", "PYTHON", "VIRTUAL_ENV"))}
    env |= {"PATH": f"{venv / 'bin'}:{env['PATH']}", "SEQLAB_DATA_DIR": str(data), "OMP_NUM_THREADS": "1"}

    def call(command: str, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
        quiet = (
            ["print_config=false", "trainer.enable_progress_bar=false"]
            if command == "seqlab-train" and "--help" not in args
            else []
        )
        return run([command, *args, *quiet], cwd=work, env=env | extra_env)

    call.work = work
    return call


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def scores(values: dict) -> dict:
    return {k: v for k, v in values.items() if k.startswith(("val/", "test/"))}


def test_the_wheel_and_sdist_hold_the_package_and_its_configs_and_nothing_else(dist):
    with zipfile.ZipFile(next(dist.glob("*.whl"))) as archive:
        wheel = archive.namelist()
    assert "seqlab/conf/train.yaml" in wheel and "seqlab/conf/experiment/mnist_lstm.yaml" in wheel
    plugins = ("seqlab_searchpath", "seqlab_sweeper", "seqlab_optuna")
    assert all(f"hydra_plugins/{name}/__init__.py" in wheel for name in plugins)
    assert {name.split("/")[0] for name in wheel} == {"seqlab", "hydra_plugins", wheel[-1].split("/")[0]}
    with tarfile.open(next(dist.glob("*.tar.gz"))) as archive:
        sdist = [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]
    assert "src/seqlab/conf/train.yaml" in sdist and "pyproject.toml" in sdist and "README.md" in sdist
    assert not [
        n for n in sdist if n.startswith(("tests", "outputs", "data", "examples", "results", ".venv"))
    ]


def test_an_installed_seqlab_trains_and_evaluates_from_an_empty_directory(user, venv):
    for tool in (
        "train",
        "eval",
        "sample",
        "predict",
        "embeddings",
        "attack",
        "summarize",
        "runs",
    ):  # every console script
        helped = user(f"seqlab-{tool}", "--help")
        assert helped.returncode == 0 and (
            "Powered by Hydra" in helped.stdout or "usage:" in helped.stdout
        ), tool
    smoke = user("seqlab-train", "experiment=mnist_lstm", "debug=fdr", "data.val_size=40", "run_name=fdr")
    assert smoke.returncode == 0, smoke.stderr[-3000:]
    assert (user.work / "outputs" / "debug" / "mnist_lstm" / "fdr" / "metrics.json").is_file()

    small = ["experiment=mnist_lstm", "debug=limit", "data.val_size=40", "data.batch_size=16", "run_name=r"]
    trained = user("seqlab-train", *small)
    assert trained.returncode == 0, trained.stderr[-3000:]
    run_dir = user.work / "outputs" / "debug" / "mnist_lstm" / "r"
    assert "seqlab 0.2.0" in (run_dir / "machine.txt").read_text()
    best = next((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    evaluated = user("seqlab-eval", f"ckpt_path={best}", "splits=[val,test]", "run_name=e")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert metrics(user.work / "outputs" / "eval" / "e") == pytest.approx(scores(metrics(run_dir)), abs=1e-6)
    site = next((venv / "lib").glob("python*/site-packages"))
    assert (site / "seqlab" / "conf" / "train.yaml").is_file() and not (site / "outputs").exists()


def test_the_example_project_trains_sweeps_resumes_and_evaluates(user, venv):
    lab = {"SEQLAB_CONFIG_PATH": "pkg://parity_lab.conf"}
    small = ["experiment=parity_janet", "trainer.max_epochs=2", "data.train_size=512"]
    straight = user("seqlab-train", *small, "run_name=straight", **lab)
    assert straight.returncode == 0, straight.stderr[-3000:]
    straight_dir = user.work / "outputs" / "parity_janet" / "straight"

    sweep = user(
        "seqlab-train", "-m", "sweep=parity_cells", "trainer.max_epochs=1", "++data.train_size=256", **lab
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    summary = (user.work / "outputs" / "sweeps" / "parity_cells" / "summary.md").read_text()
    assert "parity_janet" in summary and "parity_lstm" in summary and summary.count("| done") == 2

    # Stopped by SIGTERM in epoch 1 (tests.helpers reached through PYTHONPATH), then resumed.
    stop = [
        "+callbacks.stop._target_=tests.helpers.SignalAt",
        "+callbacks.stop.epoch=1",
        "+callbacks.stop.batch=3",
    ]
    stopped = user("seqlab-train", *small, "run_name=stopped", *stop, PYTHONPATH=str(REPO), **lab)
    assert stopped.returncode == 1 and "stopped by a signal at epoch 1" in stopped.stderr.splitlines()[-1]
    resumed = user("seqlab-train", *small, "run_name=stopped", "resume=true", **lab)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    stopped_dir = user.work / "outputs" / "parity_janet" / "stopped"
    assert scores(metrics(stopped_dir)) == pytest.approx(scores(metrics(straight_dir)), rel=1e-5, abs=1e-6)

    best = next((straight_dir / "checkpoints").glob("epoch_*.ckpt"))
    refused = user("seqlab-eval", f"ckpt_path={best}", "run_name=refused", **lab)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "export SEQLAB_TRUSTED_PACKAGES=parity_lab" in refused.stderr.strip().splitlines()[-1]
    trusted = user(
        "seqlab-eval",
        f"ckpt_path={best}",
        "splits=[val,test]",
        "run_name=ok",
        **lab,
        SEQLAB_TRUSTED_PACKAGES="parity_lab",
    )
    assert trusted.returncode == 0, trusted.stderr[-3000:]
    assert metrics(user.work / "outputs" / "eval" / "ok") == pytest.approx(
        scores(metrics(straight_dir)), abs=1e-6
    )

    # Its cell is stored by name and provider; with the project uninstalled, eval names both in one line.
    import torch

    stored = torch.load(best, weights_only=True)["seqlab"]["encoder"]
    assert stored == {"name": "janet", "provider": "parity-lab", "version": "0.1.0"}
    assert run([venv / "bin" / "python", "-m", "pip", "uninstall", "-q", "-y", "parity-lab"]).returncode == 0
    gone = user("seqlab-eval", f"ckpt_path={best}", "run_name=gone", SEQLAB_TRUSTED_PACKAGES="parity_lab")
    assert gone.returncode == 1 and "Traceback" not in gone.stderr
    assert gone.stderr.strip().splitlines()[-1] == (
        "error: model.net.cell='janet': the checkpoint's cell came from parity-lab 0.1.0, which registers no "
        "cell 'janet' here; install it (pip install 'parity-lab==0.1.0') or register it with "
        "seqlab.register_encoder"
    )


def test_the_walk_through_project_builds_and_trains_from_the_docs_own_code_blocks(user, venv):
    """docs/extending.md's bitlab: its files written from the page's code blocks, installed beside the
    wheel, and the page's commands run in order (training runs cut to two epochs). Last in this module:
    it registers a cell in the shared virtualenv."""
    files, commands = documented_project(REPO / "docs" / "extending.md")
    assert "bitlab/pyproject.toml" in files and len(commands) >= 5
    for name, text in files.items():
        (user.work / name).parent.mkdir(parents=True, exist_ok=True)
        (user.work / name).write_text(text)
    env: dict[str, str] = {}
    for command in commands:
        words = shlex.split(command)
        if words[:2] == ["pip", "install"]:
            done = run([venv / "bin" / "python", "-m", "pip", "install", "-q", *words[2:]], cwd=user.work)
        elif words[0] == "export":
            env |= dict(word.split("=", 1) for word in words[1:])
            continue
        else:
            done = user(*words, *(["trainer.max_epochs=2"] if words[0] == "seqlab-train" else []), **env)
        assert done.returncode == 0, f"{command}: {done.stderr[-3000:]}"
    lines = done.stdout.splitlines()  # seqlab-runs: one line a job of the sweep
    assert len(lines) == 7 and {line.split()[3] for line in lines[1:]} == {"cifg", "lstm", "gru"}
    first = user.work / "outputs" / "bitcount_cifg" / "first"
    assert metrics(first)["test/acc"] > 0 and (first / "checkpoints" / "last.ckpt").is_file()
