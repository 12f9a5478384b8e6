"""A project built on seqlab: its own configs (SEQLAB_CONFIG_PATH, --config-dir), its own code named by
`_target_`, and the trust a checkpoint's config needs before a tool builds that code."""

import subprocess
import sys
from pathlib import Path

import pytest

import seqlab
from seqlab import pipeline, restore
from seqlab.errors import ConfigError
from tests.helpers import seqlab_cli

LIMIT = ["debug=limit", "data.val_size=40", "data.batch_size=16"]
OWN_CELL = "model.net.cell={_target_:tests.helpers.MeanSoFarEncoder,_partial_:true}"


def test_the_public_api_resolves_without_importing_lightning():
    assert all(getattr(seqlab, name) is not None for name in seqlab.__all__)
    probe = "import sys, seqlab; print('lightning' in sys.modules, seqlab.__version__)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", seqlab.__version__]


def test_a_users_cell_trains_and_a_tool_restores_it_only_when_trusted(make_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("SEQLAB_TRUSTED_PACKAGES", raising=False)
    cfg = make_cfg("experiment=mnist_rnn", *LIMIT, OWN_CELL, output_dir=tmp_path / "own")
    _, metrics = pipeline.train(cfg)
    ckpt = tmp_path / "own" / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError) as refused:
        restore.restore_from_checkpoint(ckpt)
    message = str(refused.value)
    assert "model.net.cell._target_='tests.helpers.MeanSoFarEncoder'" in message and "\n" not in message
    assert "trusted_packages=[tests]" in message and "SEQLAB_TRUSTED_PACKAGES=tests" in message

    _, _, task = restore.restore_from_checkpoint(ckpt, trusted=["tests"])
    assert type(task.net.encoder).__name__ == "MeanSoFarEncoder"
    monkeypatch.setenv("SEQLAB_TRUSTED_PACKAGES", "other, tests")  # the environment's list counts too
    scored = pipeline.evaluate(make_cfg(f"ckpt_path={ckpt}", "splits=[val]", config_name="eval"))
    assert scored["val/acc"] == pytest.approx(metrics["val/acc"])


def test_a_target_that_cannot_be_imported_is_named_in_one_line(make_cfg):
    cfg = make_cfg("experiment=mnist_rnn", *LIMIT, "model.net._target_=no_such_lab.nets.Net")
    with pytest.raises(ConfigError) as err:
        pipeline.train(cfg)
    message = str(err.value)
    assert message.startswith("model.net._target_='no_such_lab.nets.Net' cannot be imported")
    assert "No module named 'no_such_lab'" in message and "\n" not in message


def test_an_encoder_of_the_wrong_kind_is_refused(make_cfg):
    cfg = make_cfg(
        "experiment=mnist_rnn", *LIMIT, "model.net.cell={_target_:torch.nn.Identity,_partial_:true}"
    )
    with pytest.raises(ConfigError, match=r"model.net: .*built a Identity, not a seqlab.models.Encoder"):
        pipeline.train(cfg)


@pytest.fixture
def user_conf(tmp_path: Path) -> Path:
    """A user's config folder: a new experiment, and one named like seqlab's own."""
    conf = tmp_path / "myconf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "my_lstm.yaml").write_text(
        "# @package _global_\ndefaults:\n  - mnist_lstm\ntask_name: my_lstm\nmodel:\n  net:\n    hidden_dim: 7\n"
    )
    (conf / "experiment" / "mnist_lstm.yaml").write_text("# @package _global_\ntask_name: shadowed\n")
    return conf


@pytest.mark.parametrize("how", ["env", "config-dir"])
def test_user_configs_add_experiments_and_seqlabs_own_win_a_name_clash(user_conf, tmp_path, how):
    def compose(experiment: str) -> subprocess.CompletedProcess:
        args = [f"experiment={experiment}", "--cfg", "job"]
        if how == "env":
            return seqlab_cli("train", *args, cwd=tmp_path, env={"SEQLAB_CONFIG_PATH": str(user_conf)})
        return seqlab_cli("train", "--config-dir", str(user_conf), *args, cwd=tmp_path)

    mine = compose("my_lstm")
    assert mine.returncode == 0, mine.stderr
    assert "task_name: my_lstm" in mine.stdout and "hidden_dim: 7" in mine.stdout
    clash = compose("mnist_lstm")
    assert "task_name: mnist_lstm" in clash.stdout  # seqlab's own comes first on the search path
    assert (
        f"warning: {user_conf / 'experiment' / 'mnist_lstm.yaml'} is hidden by seqlab's own" in clash.stderr
    )


@pytest.mark.parametrize("how", ["env", "config-dir", "pkg"])
def test_a_user_config_folder_that_does_not_exist_is_one_line(tmp_path, how):
    missing = tmp_path / "nowhere"
    if how == "env":
        result = seqlab_cli(
            "train", "experiment=mnist_lstm", cwd=tmp_path, env={"SEQLAB_CONFIG_PATH": str(missing)}
        )
    elif how == "pkg":
        result = seqlab_cli("train", cwd=tmp_path, env={"SEQLAB_CONFIG_PATH": "pkg://no_such_lab.conf"})
    else:
        result = seqlab_cli("train", f"--config-dir={missing}", "experiment=mnist_lstm", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert ("no_such_lab.conf" if how == "pkg" else f"{str(missing)!r} does not exist") in lines[0]
