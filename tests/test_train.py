"""The train and eval entry points end to end, on tiny MNIST files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seqlab import build, pipeline, restore
from seqlab.config import ConfigError
from seqlab.results import read_history
from tests.helpers import EXPERIMENTS

MNIST_EXPERIMENTS = [e for e in EXPERIMENTS if e.startswith("mnist")]
LIMIT = ["debug=limit", "data.val_size=40", "data.batch_size=16"]


@pytest.mark.parametrize("experiment", MNIST_EXPERIMENTS)
def test_every_experiment_runs_with_fast_dev_run(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}", "debug=fdr", "data.val_size=40")
    value, metrics = pipeline.train(cfg)
    assert value == metrics[cfg.optimized_metric]
    assert {"val/loss", "val/acc", "test/loss", "test/acc"} <= set(metrics)
    saved = json.loads(Path(cfg.paths.output_dir, "metrics.json").read_text())
    assert saved == pytest.approx(metrics) and all(isinstance(v, float) for v in saved.values())


def test_a_cell_the_grad_norm_globs_do_not_name_gets_one_warning_naming_the_setting(make_cfg, recwarn):
    """The default globs name nn.RNN's weights: a diagonal cell (or a user's) logged nothing, silently."""
    cfg = make_cfg("experiment=mnist_rnn", *LIMIT, "model.net.cell=mingru")
    pipeline.train(cfg)
    warned = [str(w.message) for w in recwarn if "callbacks.grad_norm.params" in str(w.message)]
    assert (
        len(warned) == 1
        and "matches no parameter of this model (net.encoder.layers.0.input.weight" in warned[0]
    )
    assert "or set callbacks.grad_norm=null" in warned[0]


def test_run_dir_holds_checkpoints_tensorboard_and_grad_norms(make_cfg):
    cfg = make_cfg(
        "experiment=mnist_rnn", *LIMIT, "callbacks.grad_norm.every_n_steps=1", "trainer.log_every_n_steps=2"
    )
    pipeline.train(cfg)
    out = Path(cfg.paths.output_dir)
    assert (out / "checkpoints" / "last.ckpt").exists() and len(
        list((out / "checkpoints").glob("epoch_*"))
    ) >= 1
    events = EventAccumulator(str(out / "tensorboard")).Reload()
    tags = set(events.Tags()["scalars"])
    for name in ("weight_ih_l0", "weight_hh_l0"):
        for norm in ("l1", "l2"):
            assert f"grad_norm/net.encoder.rnn.{name}/{norm}" in tags
    assert "grad_norm/net.encoder.rnn.weight_hh_l1/l2" not in tags  # only the chosen parameters
    assert {"train/loss_step", "val/acc", "val/loss"} <= tags
    steps = [e.step for e in events.Scalars("grad_norm/net.encoder.rnn.weight_hh_l0/l2")]
    assert steps == list(range(6))  # every step of 2 epochs x 3 batches
    # The per-step loss is logged on the steps the loggers write (log_every_n_steps=2 here), no others.
    assert [e.step for e in events.Scalars("train/loss_step")] == [1, 3, 5]


def test_a_progress_bar_shows_the_step_loss_and_leaves_the_logs_alone(make_cfg, tmp_path, capsys):
    def step_losses(bar: bool) -> list[tuple[int, float]]:
        out = tmp_path / f"bar_{bar}"
        overrides = (f"trainer.enable_progress_bar={str(bar).lower()}", "trainer.log_every_n_steps=2")
        pipeline.train(make_cfg("experiment=mnist_rnn", *LIMIT, *overrides, output_dir=out))
        events = EventAccumulator(str(out / "tensorboard")).Reload()
        return [(e.step, e.value) for e in events.Scalars("train/loss_step")]

    quiet = step_losses(bar=False)
    assert "train/loss_step" not in "".join(capsys.readouterr())
    assert step_losses(bar=True) == quiet and [step for step, _ in quiet] == [1, 3, 5]
    assert "train/loss_step" in "".join(capsys.readouterr())  # the bar shows it


def test_eval_reproduces_the_test_metrics_of_training(make_cfg, tmp_path):
    cfg = make_cfg("experiment=mnist_lstm", *LIMIT)
    _, trained = pipeline.train(cfg)
    best = next(Path(cfg.paths.output_dir, "checkpoints").glob("epoch_*.ckpt"))
    eval_cfg = make_cfg(
        f"ckpt_path={best}",
        "splits=[val,test]",
        "+trainer.limit_val_batches=2",
        "+trainer.limit_test_batches=2",
        config_name="eval",
        output_dir=tmp_path / "ev",
    )
    evaluated = pipeline.evaluate(eval_cfg)
    for key in ("val/acc", "val/loss", "test/acc", "test/loss"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6)
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text()) == pytest.approx(evaluated)


def test_test_false_scores_the_best_checkpoint_on_validation_only(make_cfg):
    # A search (optuna, a sweep choosing on val/acc) runs with test=false: it must still find val/acc.
    cfg = make_cfg("experiment=mnist_lstm", *LIMIT, "test=false", "optimized_metric=val/acc")
    value, metrics = pipeline.train(cfg)
    assert value == metrics["val/acc"] and "val/loss" in metrics
    assert not [key for key in metrics if key.startswith("test/")]


def test_same_seed_same_metrics_and_seed_zero_counts(make_cfg, tmp_path):
    runs = [
        pipeline.train(make_cfg("experiment=mnist_rnn", *LIMIT, f"seed={s}", output_dir=tmp_path / f"r{i}"))[
            1
        ]
        for i, s in enumerate((0, 0, 1))
    ]
    drop = lambda m: {k: v for k, v in m.items() if k != "wall_time_s"}  # noqa: E731
    assert drop(runs[0]) == drop(runs[1])
    assert drop(runs[0]) != drop(runs[2])


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "model.net.cell=lstmm",
            r"model.net.cell='lstmm' is not a registered cell; registered: rnn, own_rnn, lstm, gru",
        ),
        ("model.net.hidden_dim=-3", r"hidden_dim=-3 must be a positive integer"),
        ("model.net.dropout=1.5", r"dropout=1.5 must lie in \[0, 1\)"),
        ("data.view=diagonal", r"data: view='diagonal' is not supported"),
    ],
)
def test_config_errors_name_key_value_and_choices(make_cfg, override, message):
    with pytest.raises(ConfigError, match=message):
        pipeline.train(make_cfg(override, "debug=fdr"))


def test_unknown_optimizer_lists_the_choices(make_cfg):
    with pytest.raises(Exception, match=r"(?s)optimizer/adamm.*adagrad.*rmsprop.*sgd"):
        make_cfg("optimizer=adamm")


def test_wrong_optimized_metric_lists_the_logged_names(make_cfg):
    cfg = make_cfg("debug=fdr", "optimized_metric=val/accuracy", "data.val_size=40")
    with pytest.raises(
        ConfigError, match=r"optimized_metric='val/accuracy' was not logged; logged metrics: .*val/acc"
    ):
        pipeline.train(cfg)
    assert Path(cfg.paths.output_dir, "metrics.json").exists(), "the finished run's metrics are kept"


def test_checkpoint_of_another_model_is_refused_before_training(make_cfg, tmp_path):
    cfg = make_cfg("experiment=mnist_rnn", *LIMIT, output_dir=tmp_path / "a")
    pipeline.train(cfg)
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    with pytest.raises(
        ConfigError,
        match=r"does not fit the model config \(.*weight_hh_l0: checkpoint \(128, 128\) vs model \(64, 64\)",
    ) as refused:
        pipeline.train(
            make_cfg("experiment=mnist_rnn", "model.net.hidden_dim=64", f"ckpt_path={ckpt}", "debug=fdr")
        )
    assert "\n" not in str(refused.value) and str(refused.value).endswith("or another checkpoint")
    with pytest.raises(ConfigError, match="not a seqlab checkpoint"):
        torch.save({"weights": torch.zeros(1)}, tmp_path / "other.ckpt")
        pipeline.train(make_cfg(f"ckpt_path={tmp_path / 'other.ckpt'}", "debug=fdr"))
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        pipeline.train(make_cfg(f"ckpt_path={tmp_path / 'junk.ckpt'}", "debug=fdr"))


def cli(module: str, *args: str, data_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SEQLAB_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, cwd=cwd
    )


@pytest.mark.slow
def test_cli_trains_and_reports_config_errors_in_one_line(data_dir, tmp_path):
    ok = cli(
        "seqlab.train",
        "experiment=mnist_lstm",
        "debug=fdr",
        "data.val_size=40",
        f"hydra.run.dir={tmp_path / 'run'}",
        data_dir=data_dir,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert "model" in ok.stdout and "Gradient norms at the first step" in ok.stdout + ok.stderr
    assert (tmp_path / "run" / "metrics.json").exists()
    for notice in ("LeafSpec", "Tip:", "The `srun` command"):  # nothing a user could act on
        assert notice not in ok.stdout + ok.stderr
    bad = cli(
        "seqlab.train",
        "model.net.cell=lstmm",
        f"hydra.run.dir={tmp_path / 'bad'}",
        data_dir=data_dir,
        cwd=tmp_path,
    )
    assert bad.returncode == 1
    assert (
        bad.stderr.strip()
        .splitlines()[-1]
        .startswith("error: model.net.cell='lstmm' is not a registered cell")
    )
    assert "Traceback" not in bad.stderr


def test_every_experiment_belongs_to_a_task_suite():
    """Each suite runs its own prefix's experiments with debug=fdr; none may fall between them."""
    suites = ("mnist", "ptb", "imdb", "adding", "copy")  # adding/copy: tests/test_long_memory.py
    assert EXPERIMENTS and all(e.split("_")[0] in suites for e in EXPERIMENTS)


def test_a_checkpoint_config_cannot_instantiate_arbitrary_targets(make_cfg, tmp_path):
    cfg = make_cfg("experiment=mnist_rnn", *LIMIT, output_dir=tmp_path / "a")
    pipeline.train(cfg)
    ckpt = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)
    ckpt["seqlab"]["config"]["optimizer"] = {"_target_": "os.system", "command": "echo pwned"}
    torch.save(ckpt, tmp_path / "evil.ckpt")
    with pytest.raises(ConfigError, match=r"optimizer._target_='os.system'"):
        restore.restore_from_checkpoint(tmp_path / "evil.ckpt")


def test_lr_schedule_sets_the_schedulers_interval_and_monitor(make_cfg):
    """Lightning's options for a schedule live beside its constructor node (`lr_schedule`)."""
    cfg = make_cfg(
        "experiment=mnist_rnn", "scheduler=plateau", "lr_schedule.monitor=val/acc", "scheduler.mode=max"
    )
    datamodule = build.build_datamodule(cfg)
    schedule = build.build_task(cfg, datamodule).configure_optimizers()["lr_scheduler"]
    assert schedule["monitor"] == "val/acc" and schedule["interval"] == "epoch"
    assert isinstance(schedule["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    cfg = make_cfg("experiment=mnist_rnn", "scheduler=cosine", "lr_schedule.interval=step")
    schedule = build.build_task(cfg, build.build_datamodule(cfg)).configure_optimizers()["lr_scheduler"]
    assert schedule["interval"] == "step" and schedule["scheduler"].T_max == cfg.trainer.max_epochs


def test_scheduler_linear_decays_the_rate_to_zero_over_exactly_the_runs_epochs(make_cfg):
    cfg = make_cfg(
        "experiment=mnist_rnn",
        "scheduler=linear",
        "optimizer=sgd",
        "optimizer.lr=1.2",
        "trainer.max_epochs=4",
    )
    schedule = build.build_task(cfg, build.build_datamodule(cfg)).configure_optimizers()["lr_scheduler"]
    scheduler, rates = schedule["scheduler"], []
    for _ in range(5):  # the rate each epoch trains at, then one past the end
        rates.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    assert schedule["interval"] == "epoch"
    assert rates == pytest.approx([1.2, 0.9, 0.6, 0.3, 0.0])


def test_a_config_with_interval_and_monitor_inside_the_scheduler_node_still_builds(make_cfg):
    """Run dirs written before `lr_schedule` keep both in the scheduler node; eval and resume read them there."""
    cfg = make_cfg("experiment=mnist_rnn", "scheduler=plateau", "scheduler.mode=max")
    with open_dict(cfg):
        del cfg["lr_schedule"]
        cfg.scheduler.interval, cfg.scheduler.monitor = "step", "val/acc"
    schedule = build.build_task(cfg, build.build_datamodule(cfg)).configure_optimizers()["lr_scheduler"]
    assert schedule["monitor"] == "val/acc" and schedule["interval"] == "step"
    assert isinstance(schedule["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)


@pytest.mark.parametrize("count_every", [2, 64])  # 3 batches: counted in groups, the rest at the epoch end
def test_train_loss_and_accuracy_are_the_epochs_example_weighted_means(make_cfg, monkeypatch, count_every):
    from seqlab.tasks.classification import SequenceClassifier
    from tests.helpers import BatchScores

    monkeypatch.setattr(SequenceClassifier, "COUNT_EVERY_N_STEPS", count_every)
    BatchScores.rows = []
    cfg = make_cfg(
        "experiment=mnist_rnn",
        "debug=limit",
        "trainer.max_epochs=1",
        "data.val_size=40",
        "data.batch_size=12",
        "model.net.dropout=0.0",
        "+callbacks.scores._target_=tests.helpers.BatchScores",
    )
    _, metrics = pipeline.train(cfg)
    rows, n = BatchScores.rows, sum(r[2] for r in BatchScores.rows)
    history = read_history(Path(cfg.paths.output_dir) / "history.csv")[0]
    assert history["train/loss"] == pytest.approx(sum(loss * k for loss, _, k in rows) / n, rel=1e-5)
    assert history["train/acc"] == pytest.approx(sum(c for _, c, _ in rows) / n, rel=1e-6)
    assert metrics["train/loss"] == pytest.approx(history["train/loss"], rel=1e-6)


def test_the_monitoring_checkpoint_is_scored_wherever_it_is_listed(make_cfg):
    """Test metrics come from the best checkpoint by optimized_metric even when the every-epoch checkpoint
    callback is listed first."""
    best = ["_target_=lightning.pytorch.callbacks.ModelCheckpoint", "monitor=val/loss", "mode=min"]
    cfg = make_cfg(
        "experiment=mnist_rnn",
        "debug=limit",
        "trainer.max_epochs=4",
        "data.val_size=40",
        "optimizer.lr=0.05",
        "optimized_metric=val/loss",
        "optimized_mode=min",
        "~callbacks.model_checkpoint",
        *(f"+callbacks.zbest.{kv}" for kv in best),
        "+callbacks.zbest.dirpath=${paths.output_dir}/checkpoints",
    )
    _, metrics = pipeline.train(cfg)
    losses = [row["val/loss"] for row in read_history(Path(cfg.paths.output_dir) / "history.csv")]
    assert metrics["val/loss"] == pytest.approx(min(losses), rel=1e-5)
    lines = (Path(cfg.paths.output_dir) / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == ["epoch", "0", "1", "2", "3"]  # integers, every row


def test_machine_txt_names_what_a_rerun_on_other_hardware_needs(make_cfg, monkeypatch):
    """Two '2-thread AMD EPYC' machines, one with AVX-512 and one AVX2 only, train to slightly different
    numbers: machine.txt names the kernels' instruction set and the math libraries as well as the CPU."""
    from seqlab.rundir import records

    cfg = make_cfg(*LIMIT)
    pipeline.train(cfg)
    recorded = Path(cfg.paths.output_dir, "machine.txt").read_text().strip()
    assert recorded == records.machine()
    assert f"{torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()} kernels" in recorded
    assert "oneDNN " in recorded and f"torch {torch.__version__}" in recorded
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert ", AVX2 kernels," in records.machine()


def test_the_confusion_matrix_and_text_samples_reach_tensorboard(make_cfg, tmp_path, data_dir):
    """Read back with TensorBoard's own event reader: an image per validation and test, a text sample per
    validation whose words come from the vocabulary."""
    mnist = tmp_path / "mnist"
    pipeline.train(make_cfg("experiment=mnist_rnn", *LIMIT, output_dir=mnist))
    events = EventAccumulator(str(mnist / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert {"val/confusion_matrix", "test/confusion_matrix"} <= set(events.Tags()["images"])
    images = events.Images("val/confusion_matrix")
    # one an epoch, and one for the best checkpoint's final validation (none for the sanity check)
    assert len(images) == 3 and images[-1].encoded_image_string.startswith(b"\x89PNG")
    assert images[-1].width > 100 and images[-1].height > 100

    ptb = tmp_path / "ptb"
    small = [
        "data.batch_size=4",
        "data.eval_batch_size=3",
        "data.seq_len=6",
        "model.truncated_bptt_steps=3",
        "debug=limit",
    ]
    pipeline.train(make_cfg("experiment=ptb_lab", *small, output_dir=ptb))
    events = EventAccumulator(str(ptb / "tensorboard"), size_guidance={"tensors": 0}).Reload()
    samples = events.Tensors("sample/text_summary")
    assert (
        len(samples) == 3
    )  # one per validation (2 epochs, then the best checkpoint), none for the sanity check
    text = samples[-1].tensor_proto.string_val[0].decode()
    words = set((data_dir / "ptb" / "ptb.train.txt").read_text().split()) | {"<unk>"}
    assert text.split()[0] == "the" and set(text.replace("<eos>", "").split()) <= words


def test_help_loads_neither_torch_nor_lightning():
    """`seqlab-train --help` answers from Hydra and the configs alone (about a second), not after
    importing torch and Lightning (7-12 s): the plugins Hydra scans import nothing heavy."""
    code = (
        "import sys\n"
        "sys.argv = ['seqlab-train', '--help']\n"
        "from seqlab.cli import train_main\n"
        "try:\n    train_main()\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'lightning', 'pandas', 'matplotlib') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "Powered by Hydra" in out.stdout and out.stdout.splitlines()[-1] == "HEAVY []", out.stderr[-2000:]
