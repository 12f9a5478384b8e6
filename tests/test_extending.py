"""A project built on seqlab: its own configs (SEQLAB_CONFIG_PATH, --config-dir), its own cells registered
by name, its own code named by `_target_`, and the trust a checkpoint's config needs before a tool builds it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import seqlab
from seqlab import pipeline, restore
from seqlab.config import CONF_DIR
from seqlab.errors import ConfigError
from tests.helpers import seqlab_cli

LIMIT = ["debug=limit", "data.val_size=40", "data.batch_size=16"]
OWN_CELL = "model.net.cell=mean_so_far"  # registered by tests.helpers


def test_the_public_api_resolves_without_importing_lightning():
    assert all(getattr(seqlab, name) is not None for name in seqlab.__all__)
    probe = "import sys, seqlab; print('lightning' in sys.modules, seqlab.__version__)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", seqlab.__version__]


@pytest.mark.slow
def test_a_registered_cell_trains_restores_by_name_and_is_named_where_it_is_not_registered(
    make_cfg, tmp_path, monkeypatch
):
    cfg = make_cfg("experiment=mnist_rnn", *LIMIT, OWN_CELL, output_dir=tmp_path / "own")
    _, metrics = pipeline.train(cfg)
    ckpt = tmp_path / "own" / "checkpoints" / "last.ckpt"
    stored = restore.read_checkpoint(ckpt)["seqlab"]
    assert (
        stored["encoder"]["name"] == "mean_so_far"
        and stored["config"]["model"]["net"]["cell"] == "mean_so_far"
    )
    _, _, task = restore.restore_from_checkpoint(ckpt)  # by name: no import path, so nothing to trust
    assert type(task.net.encoder).__name__ == "MeanSoFarEncoder"
    scored = pipeline.evaluate(make_cfg(f"ckpt_path={ckpt}", "splits=[val]", config_name="eval"))
    assert scored["val/acc"] == pytest.approx(metrics["val/acc"])

    # A process where nothing registered it: one line naming the cell and who provided it.
    refused = seqlab_cli("eval", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'refused'}", cwd=tmp_path)
    line = refused.stderr.strip().splitlines()[-1]
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    provider = stored["encoder"]["provider"]
    assert f"error: model.net.cell='mean_so_far': the checkpoint's cell came from {provider}" in line
    assert "register it with seqlab.register_encoder" in line
    assert not (tmp_path / "refused").exists(), "a refused eval leaves no empty run dir"


def test_a_checkpoint_naming_its_cell_by_import_path_restores_through_the_registry(make_cfg, tmp_path):
    """Checkpoints written before the registry stored `cell: {_target_: ..., _partial_: true}` and a
    transformer's settings beside `cell` on the net: they restore, by the registered name."""
    cfg = make_cfg("experiment=mnist_rnn", *LIMIT, OWN_CELL, output_dir=tmp_path / "own")
    _, metrics = pipeline.train(cfg)
    ckpt = tmp_path / "own" / "checkpoints" / "last.ckpt"
    old = torch.load(ckpt, weights_only=True)
    del old["seqlab"]["encoder"]
    old["seqlab"]["config"]["model"]["net"]["cell"] = {
        "_target_": "tests.helpers.MeanSoFarEncoder",
        "_partial_": True,
    }
    old["seqlab"]["config"]["model"]["net"].update(pack=True, num_heads=4, positions="sinusoidal")
    torch.save(old, tmp_path / "old.ckpt")
    scored = pipeline.evaluate(
        make_cfg(f"ckpt_path={tmp_path / 'old.ckpt'}", "splits=[val]", config_name="eval")
    )
    assert scored["val/acc"] == pytest.approx(metrics["val/acc"])
    old["seqlab"]["config"]["model"]["net"]["cell"]["_target_"] = "gone_lab.cells.Cell"
    torch.save(old, tmp_path / "gone.ckpt")
    with pytest.raises(
        ConfigError, match=r"^model.net.cell._target_='gone_lab.cells.Cell': this checkpoint names"
    ):
        restore.restore_from_checkpoint(tmp_path / "gone.ckpt")


def test_a_target_that_cannot_be_imported_is_named_in_one_line(make_cfg):
    cfg = make_cfg("experiment=mnist_rnn", *LIMIT, "model.net._target_=no_such_lab.nets.Net")
    with pytest.raises(ConfigError) as err:
        pipeline.train(cfg)
    message = str(err.value)
    assert message.startswith("model.net._target_='no_such_lab.nets.Net' cannot be imported")
    assert "No module named 'no_such_lab'" in message and "\n" not in message


def test_an_encoder_of_the_wrong_kind_is_refused(make_cfg):
    seqlab.register_encoder("identity_test_cell", torch.nn.Identity)
    cfg = make_cfg("experiment=mnist_rnn", *LIMIT, "model.net.cell=identity_test_cell")
    with pytest.raises(
        ConfigError, match=r"model.net.cell=identity_test_cell built a Identity, not a seqlab"
    ):
        pipeline.train(cfg)


def test_a_cell_named_by_import_path_in_a_config_is_told_to_register_it(make_cfg):
    cfg = make_cfg("experiment=mnist_rnn", *LIMIT, "model.net.cell={_target_:mylab.Cell,_partial_:true}")
    with pytest.raises(
        ConfigError, match=r"model.net.cell._target_='mylab.Cell': cells are chosen by a registered"
    ):
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


@pytest.mark.slow
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


def test_a_data_config_without_shuffle_seed_follows_the_runs_seed(make_cfg):
    """A user's data yaml needed `shuffle_seed: ${seed}`, or every seed of a sweep saw one batch order."""
    from seqlab.build import build_datamodule

    orders = {
        seed: build_datamodule(
            make_cfg("experiment=mnist_rnn", "~data.shuffle_seed", f"seed={seed}")
        ).shuffle_seed
        for seed in (1, 2)
    }
    assert orders == {1: 1, 2: 2}
    fixed = build_datamodule(make_cfg("experiment=mnist_rnn", "data.shuffle_seed=7", "seed=1"))
    assert fixed.shuffle_seed == 7  # set: kept


def test_a_target_whose_module_lacks_the_class_names_both(make_cfg):
    """`No module named 'tests.helpers.CIFGLstm'; 'tests.helpers' is not a package` hid the real problem."""
    cfg = make_cfg("experiment=mnist_rnn", *LIMIT, "model.net._target_=tests.helpers.CIFGLstm")
    with pytest.raises(ConfigError) as err:
        pipeline.train(cfg)
    message = str(err.value)
    assert message.startswith(
        "model.net._target_='tests.helpers.CIFGLstm': module tests.helpers has no 'CIFGLstm'"
    )
    assert "MeanSoFarEncoder" in message and "\n" not in message


@pytest.mark.slow
def test_an_unknown_experiment_is_one_line_naming_the_folders_and_the_config_path(tmp_path, user_conf):
    """Without SEQLAB_CONFIG_PATH a user's experiment got Hydra's 35-line list of seqlab's options."""
    lost = seqlab_cli("train", "experiment=my_lstm", cwd=tmp_path)
    assert lost.returncode == 1 and "Traceback" not in lost.stderr
    assert lost.stderr.strip().splitlines() == [
        f"error: experiment=my_lstm: no my_lstm.yaml in {CONF_DIR}/experiment; a project's own are found "
        "through SEQLAB_CONFIG_PATH (unset here) or --config-dir"
    ]
    found = seqlab_cli(
        "train",
        "experiment=my_lstm",
        "--cfg",
        "job",
        cwd=tmp_path,
        env={"SEQLAB_CONFIG_PATH": str(user_conf)},
    )
    assert found.returncode == 0, found.stderr
    typo = seqlab_cli("train", "experiment=my_lstn", cwd=tmp_path, env={"SEQLAB_CONFIG_PATH": str(user_conf)})
    assert typo.stderr.strip().splitlines()[-1] == (
        f"error: experiment=my_lstn: no my_lstn.yaml in {CONF_DIR}/experiment, {user_conf}/experiment"
    )


def test_several_config_folders_local_site_settings_and_the_cache_dir_come_from_the_environment(
    make_cfg, tmp_path, monkeypatch
):
    """SEQLAB_CONFIG_PATH with two folders: an experiment from each, site settings from `local/` in a
    user's folder (the SLURM launcher reads local/slurm.yaml), and $SEQLAB_CACHE_DIR for derived data."""
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "experiment").mkdir(parents=True)
    (first / "experiment" / "from_first.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /data: mnist\nmodel:\n  net:\n    hidden_dim: 11\n"
    )
    (second / "experiment").mkdir(parents=True)
    (second / "experiment" / "from_second.yaml").write_text(
        "# @package _global_\nmodel:\n  net:\n    hidden_dim: 22\n"
    )
    (second / "local").mkdir()
    (second / "local" / "slurm.yaml").write_text("partition: our_gpus\n")
    monkeypatch.setenv("SEQLAB_CONFIG_PATH", os.pathsep.join([str(first), str(second)]))
    monkeypatch.setenv("SEQLAB_CACHE_DIR", str(tmp_path / "cache"))
    assert make_cfg("experiment=from_first").model.net.hidden_dim == 11
    cfg = make_cfg("experiment=from_second", "hydra/launcher=slurm")
    assert cfg.model.net.hidden_dim == 22 and cfg.hydra.launcher.partition == "our_gpus"
    assert cfg.paths.cache_dir == str(tmp_path / "cache")
