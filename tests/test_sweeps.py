"""Multirun sweeps end to end: summaries, failed jobs, reruns, TensorBoard HParams, Optuna, submitit, DDP."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seqlab.data.base import RankBatches
from seqlab.errors import ConfigError
from tests.helpers import REPO, TINY_MNIST, read_summary, sweep_cli, train_cli


@pytest.fixture(scope="module")
def failed_sweep(tmp_path_factory, data_dir):
    """Four jobs, two of which fail (an unknown cell) on purpose."""
    sweep_dir = tmp_path_factory.mktemp("sweep")
    args = [*TINY_MNIST, "model.net.hidden_dim=8,16", "model.net.cell=rnn,lstmm"]
    return sweep_dir, args, sweep_cli(args, sweep_dir, data_dir)


@pytest.mark.slow
def test_a_sweep_summarizes_itself_and_keeps_going_past_failures(failed_sweep):
    sweep_dir, _, result = failed_sweep
    assert result.returncode != 0, "a sweep with failed jobs exits with an error"
    rows = read_summary(sweep_dir)
    assert [(r["job"], r["status"]) for r in rows] == [
        ("0", "done"),
        ("1", "failed"),
        ("2", "done"),
        ("3", "failed"),
    ]
    assert {r["model.net.hidden_dim"] for r in rows} == {"8", "16"}
    for r in rows:
        if r["status"] == "done":
            assert (
                0 <= float(r["val/acc"]) <= 1 and float(r["test/loss"]) > 0 and r["best_epoch"] in ("0", "1")
            )
            assert float(r["wall_time_s"]) > 0 and r["epochs"] == "2"
        else:
            assert "cell='lstmm' is not a registered cell" in r["error"] and r["val/acc"] == ""
    table = (sweep_dir / "summary.md").read_text()
    assert "2 of 4 jobs done; 2 failed or incomplete" in table and "| 1 | failed |" in table
    assert json.loads((sweep_dir / "1" / "error.json").read_text())["type"] == "ConfigError"
    assert (sweep_dir / "curves.png").stat().st_size > 10_000
    assert (sweep_dir / "val_acc_vs_model_net_hidden_dim.png").exists()
    # Every job logged under the sweep dir, with its config and final metrics for TensorBoard's HParams tab.
    events = EventAccumulator(str(sweep_dir / "0" / "tensorboard")).Reload()
    assert "_hparams_/session_start_info" in events.summary_metadata
    assert {"final/val/acc", "final/test/acc"} <= set(events.Tags()["scalars"])


@pytest.mark.slow
def test_rerunning_a_sweep_skips_finished_jobs_and_retries_the_others(failed_sweep, data_dir):
    sweep_dir, args, _ = failed_sweep
    stamps = {n: (sweep_dir / n / "metrics.json").stat().st_mtime_ns for n in ("0", "2")}
    again = sweep_cli(args, sweep_dir, data_dir)
    assert (again.stdout + again.stderr).count(
        "holds a finished run (metrics.json): not training it again"
    ) == 2
    assert {n: (sweep_dir / n / "metrics.json").stat().st_mtime_ns for n in ("0", "2")} == stamps
    assert [r["status"] for r in read_summary(sweep_dir)] == ["done", "failed", "done", "failed"]


@pytest.mark.slow
def test_summarize_cli_rebuilds_the_summary(failed_sweep, tmp_path):
    import subprocess
    import sys

    sweep_dir, _, _ = failed_sweep
    (sweep_dir / "summary.md").unlink()
    out = subprocess.run(
        [sys.executable, "-m", "seqlab.summarize", str(sweep_dir)], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    assert "| 0 | done |" in out.stdout and (sweep_dir / "summary.md").exists()
    empty = subprocess.run(
        [sys.executable, "-m", "seqlab.summarize", str(tmp_path)], capture_output=True, text=True, cwd=REPO
    )
    assert empty.returncode == 2 and "no job dirs" in empty.stderr


@pytest.mark.slow
def test_a_damaged_metrics_json_is_named_counted_failed_and_rerun(failed_sweep, tmp_path, data_dir):
    """A job's metrics.json cut short (a full disk, a copy interrupted) ended summarize and the sweep's
    rerun in a JSONDecodeError traceback: now the job is `failed` with the file named, and a rerun
    sets the file aside and finishes the job again."""
    import shutil

    sweep_dir, args, _ = failed_sweep
    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy)
    (copy / "summary.md").unlink()
    metrics = copy / "0" / "metrics.json"
    metrics.write_text(metrics.read_text()[:20])
    out = subprocess.run(
        [sys.executable, "-m", "seqlab.summarize", str(copy)], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    row = read_summary(copy)[0]
    assert row["status"] == "failed" and f"{metrics} is damaged (JSONDecodeError" in row["error"]
    again = sweep_cli([*args, "resume=true"], copy, data_dir)
    assert "Traceback" not in again.stderr and "kept as metrics.json.damaged" in again.stdout + again.stderr
    assert (copy / "0" / "metrics.json.damaged").is_file() and json.loads(metrics.read_text())["val/acc"] >= 0
    assert read_summary(copy)[0]["status"] == "done"


def test_named_sweep_configs_compose_with_fixed_dirs():
    from hydra import compose, initialize_config_dir

    from seqlab.config import CONF_DIR

    names = sorted(p.stem for p in Path(CONF_DIR, "sweep").glob("*.yaml"))
    assert {
        "imdb_optimizers",
        "imdb_optimizers_gru",
        "imdb_seeds",
        "imdb_compound",
        "imdb_layers",
        "imdb_hidden",
        "imdb_embed",
        "mnist_cells",
        "ptb_teacher_forcing",
    } <= set(names)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for name in names:
            # the long-memory sweep runs on a chosen problem and length, and its dir names both
            extra, suffix = (
                (["experiment=adding"], "long_memory/adding_T200")
                if name == "long_memory_cells"
                else ([], name)
            )
            cfg = compose("train", overrides=[f"sweep={name}", *extra], return_hydra_config=True)
            assert cfg.hydra.sweep.dir.endswith(f"sweeps/{suffix}") and cfg.hydra.sweeper.params
        cfg = compose(
            "train", overrides=["sweep=imdb_optimizers", "optimizer=adagrad"], return_hydra_config=True
        )
        assert cfg.hydra.sweeper.params.optimizer == "sgd,sgd_momentum,adagrad,rmsprop,adam"
        assert cfg.optimizer.lr == 0.01  # adagrad's own rate from the experiment's optimizer_lr table


def optuna_study(sweep_dir: Path):
    import optuna

    return optuna.load_study(study_name="search", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")


@pytest.mark.slow
def test_optuna_search_prunes_and_resumes(tmp_path, data_dir):
    from optuna.trial import TrialState

    sweep_dir = tmp_path / "search"
    base = [*TINY_MNIST, "hparams_search=mnist_optuna", "hydra.sweeper.n_startup_trials=1"]
    # A pruner that stops every trial at its first report: both trials are pruned after epoch 0.
    pruned = sweep_cli(
        [
            *base,
            "hydra.sweeper.n_trials=2",
            "~hydra.sweeper.pruner",
            "+hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:2.0}",
        ],
        sweep_dir,
        data_dir,
    )
    assert pruned.returncode == 0, pruned.stderr[-3000:]
    assert [t.state for t in optuna_study(sweep_dir).trials] == [TrialState.PRUNED] * 2
    assert [r["status"] for r in read_summary(sweep_dir)] == ["pruned", "pruned"]
    # The same command with a larger budget resumes the stored study: one more trial, not three.
    resumed = sweep_cli([*base, "hydra.sweeper.n_trials=3", "hydra.sweeper.pruner=null"], sweep_dir, data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = optuna_study(sweep_dir).trials
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.PRUNED, TrialState.COMPLETE]
    assert 0 <= trials[2].value <= 1 and set(trials[2].params) == {
        "optimizer.lr",
        "model.net.hidden_dim",
        "model.net.num_layers",
        "model.net.dropout",
    }
    results = (sweep_dir / "optimization_results.yaml").read_text()
    assert "best_trial: 2" in results
    assert json.loads((sweep_dir / "2" / "metrics.json").read_text())["val/acc"] == pytest.approx(
        trials[2].value
    )


@pytest.mark.slow
def test_an_optuna_search_stopped_mid_trial_resumes_without_drawing_tried_values_again(tmp_path, data_dir):
    """SIGTERM in trial 2 of 6; the rerun retries trial 2's values as trial 3, then draws new ones (a seeded
    sampler restarted with the process drew trials 0 and 1 again), and the summary lists the retry once."""
    from optuna.trial import TrialState

    sweep_dir = tmp_path / "search"
    base = [
        *TINY_MNIST,
        "hparams_search=mnist_optuna",
        "hydra.sweeper.n_trials=6",
        "hydra.sweeper.pruner=null",
    ]
    stop = ["+callbacks.stop._target_=tests.helpers.SignalAt", "+callbacks.stop.epoch=1"]
    stopped = sweep_cli(
        [*base, *stop, "+callbacks.stop.batch=1", "+callbacks.stop.job=2"], sweep_dir, data_dir
    )
    assert stopped.returncode == 1 and "stopped by a signal at epoch 1" in stopped.stderr
    resumed = sweep_cli([*base, "resume=true"], sweep_dir, data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    trials = optuna_study(sweep_dir).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL] + [
        TrialState.COMPLETE
    ] * 4
    assert trials[3].params == trials[2].params  # the stopped trial's values, retried
    drawn = [tuple(sorted(t.params.items())) for t in trials if t.number != 2]
    assert len(set(drawn)) == len(drawn) == 6, "a resumed search drew values it had already tried"
    rows = read_summary(sweep_dir)
    assert [r["job"] for r in rows] == ["0", "1", "3", "4", "5", "6"] and {r["status"] for r in rows} == {
        "done"
    }
    assert (sweep_dir / "2" / "retried_as").read_text() == "3\n"


@pytest.mark.slow
def test_submitit_local_sweep_with_a_killed_and_a_raising_job(tmp_path, data_dir):
    """Jobs in their own processes: one SIGKILLed, one raising; the others' results and the summary stay."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs pip install -e .[cluster]")
    sweep_dir = tmp_path / "sweep"
    result = sweep_cli(
        [
            *TINY_MNIST,
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=5",
            "model.net.cell=rnn,lstmm",
            "+callbacks.kill._target_=tests.helpers.KillAt",
            "+callbacks.kill.epoch=1,99",
            "+callbacks.kill.batch=1",
        ],
        sweep_dir,
        data_dir,
    )
    assert result.returncode != 0
    assert (sweep_dir / "summary.md").exists(), "written by the jobs as they ended"
    rows = {r["job"]: r for r in read_summary(sweep_dir)}
    # Job order: (rnn, kill at epoch 1), (rnn, 99: never), (lstmm, 1), (lstmm, 99).
    from seqlab.sweeps.summary import summarize

    rows = {r["job"]: r for r in summarize(sweep_dir)}
    assert rows["0"]["status"] == "interrupted (resumable)" and "resume=true" in rows["0"]["error"]
    assert rows["1"]["status"] == "done" and float(rows["1"]["val/acc"]) >= 0
    assert rows["2"]["status"] == rows["3"]["status"] == "failed" and "lstmm" in rows["3"]["error"]


def metrics_of(run_dir: Path) -> dict:
    return {k: v for k, v in json.loads((run_dir / "metrics.json").read_text()).items() if k != "wall_time_s"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "task,single,per_rank",
    [
        (TINY_MNIST[:-1] + ["model.net.dropout=0.0"], ["data.batch_size=16"], ["data.batch_size=8"]),
        (
            [
                "experiment=ptb_lab",
                "data.seq_len=6",
                "model.truncated_bptt_steps=3",
                "model.net.hidden_dim=16",
            ],
            ["data.batch_size=4", "data.eval_batch_size=4"],
            ["data.batch_size=2", "data.eval_batch_size=4"],  # evaluation streams do not depend on ranks
        ),
    ],
    ids=["mnist", "ptb"],
)
def test_two_process_cpu_ddp_matches_one_process_on_the_same_global_batch(
    task, single, per_rank, tmp_path, data_dir
):
    common = [
        *task,
        "debug=limit",
        "trainer.max_epochs=2",
        "trainer.limit_val_batches=1.0",
        "trainer.limit_test_batches=1.0",
    ]
    one = train_cli([*common, *single], tmp_path / "one", data_dir)
    two = train_cli(
        [*common, *per_rank, "trainer=ddp_cpu", "trainer.max_epochs=2"], tmp_path / "two", data_dir
    )
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    # Same examples per global step, gradients averaged over ranks, metrics reduced across ranks:
    # equal up to float summation order (stated tolerance: 1e-4 relative).
    assert metrics_of(tmp_path / "two") == pytest.approx(metrics_of(tmp_path / "one"), rel=1e-4, abs=1e-5)
    assert not list((tmp_path / "two").glob("**/rank_1*")), "one run dir, written by rank 0"


def eval_cli(overrides: list[str], run_dir: Path, data_dir: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [f"paths.data_dir={data_dir}", f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false"]
    result = subprocess.run(
        [sys.executable, "-m", "seqlab.eval", *args, *overrides],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_a_ptb_checkpoint_scores_the_same_perplexity_on_one_or_two_processes(tmp_path, data_dir):
    """Evaluation cuts the same streams whatever the device count: no other state resets or dropped tail."""
    ptb = ["experiment=ptb_lab", "data.seq_len=6", "model.truncated_bptt_steps=3", "model.net.hidden_dim=16"]
    trained = train_cli(
        [*ptb, "debug=limit", "data.batch_size=4", "data.eval_batch_size=5"], tmp_path / "t", data_dir
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    ckpt = f"ckpt_path={tmp_path / 't' / 'checkpoints' / 'last.ckpt'}"
    one = eval_cli([ckpt, "splits=[val,test]"], tmp_path / "one", data_dir)
    two = eval_cli([ckpt, "splits=[val,test]", "trainer=ddp_cpu"], tmp_path / "two", data_dir)
    assert set(one) == {"val/loss", "val/ppl", "test/loss", "test/ppl"}
    # The same tokens scored with the same carried states; only the matrix kernels' batch widths differ.
    assert two == pytest.approx(one, rel=1e-6)


@pytest.mark.slow
def test_a_ddp_job_inside_a_multirun_sweep(tmp_path, data_dir):
    sweep_dir = tmp_path / "sweep"
    result = sweep_cli([*TINY_MNIST, "trainer=ddp_cpu", "model.net.hidden_dim=8,16"], sweep_dir, data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["status"] for r in read_summary(sweep_dir)] == ["done", "done"]
    assert not (sweep_dir / "2").exists(), "the ranks did not start the sweep again"


def test_every_rank_evaluates_something_even_with_fewer_batches_than_ranks():
    """A rank without evaluation batches would leave the others waiting at the metric sync (a hang)."""

    def one_batch(generator):  # e.g. a small split with eval_batch_size 1000
        return [list(range(10))]

    shards = [list(RankBatches(one_batch, shuffle=False, rank=r, world=4)) for r in range(4)]
    assert all(len(shard) == 1 and shard[0] for shard in shards)
    assert sorted(i for shard in shards for i in shard[0]) == list(range(10)), "each example exactly once"
    assert [len(RankBatches(one_batch, shuffle=False, rank=r, world=4)) for r in range(4)] == [1, 1, 1, 1]
    with pytest.raises(ConfigError, match="3 examples to evaluate cannot be shared by 4 processes"):
        RankBatches(lambda generator: [[0, 1, 2]], shuffle=False, rank=0, world=4)


@pytest.mark.slow
def test_jobs_that_differ_only_by_seed_are_summarized_once_with_mean_std_and_n(tmp_path, data_dir):
    sweep_dir = tmp_path / "seeds"
    result = sweep_cli([*TINY_MNIST, "model.net.hidden_dim=8,16", "seed=0,1,2"], sweep_dir, data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    configs = read_summary(sweep_dir)
    with open(sweep_dir / "jobs.csv", newline="") as f:
        jobs = list(csv.DictReader(f))
    assert [(c["model.net.hidden_dim"], c["n"]) for c in configs] == [("8", "3"), ("16", "3")]
    assert len(jobs) == 6 and {j["seed"] for j in jobs} == {"0", "1", "2"}
    for config in configs:
        accs = [
            float(j["test/acc"]) for j in jobs if j["model.net.hidden_dim"] == config["model.net.hidden_dim"]
        ]
        mean = sum(accs) / 3
        std = (sum((a - mean) ** 2 for a in accs) / 2) ** 0.5
        assert float(config["test/acc_mean"]) == pytest.approx(mean)
        assert float(config["test/acc_std"]) == pytest.approx(std)
    table = (sweep_dir / "summary.md").read_text()
    assert "## Over seeds" in table and "## Jobs" in table and " ± " in table
    assert (sweep_dir / "val_acc_vs_model_net_hidden_dim.png").exists()


def test_a_run_made_alone_and_its_seeds_made_by_a_named_sweep_are_one_configuration():
    from seqlab.sweeps.summary import swept_params

    alone = {"overrides": ["experiment=imdb_bilstm_pairs", "seed=0"]}
    swept = [
        {"overrides": ["experiment=imdb_bilstm_pairs", f"seed={s}", "sweep=imdb_region_inputs"]}
        for s in (1, 2)
    ]
    assert swept_params([alone, *swept]) == ["seed"]
    other = {"overrides": ["experiment=imdb_bilstm_best", "seed=0", "+sweep=imdb_region_inputs"]}
    assert swept_params([alone, *swept, other]) == ["experiment", "seed"]


@pytest.mark.slow
@pytest.mark.parametrize("choice", ["sweep=mnist_cells", "+sweep=mnist_cells"])
def test_a_named_sweep_is_chosen_as_sweep_or_as_the_older_plus_sweep(choice):
    shown = subprocess.run(
        [sys.executable, "-m", "seqlab.train", choice, "--cfg", "hydra"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "dir: ${paths.log_dir}/sweeps/mnist_cells" in shown.stdout


@pytest.mark.slow
def test_a_sweep_process_killed_mid_job_is_taken_over_by_resume_and_its_incomplete_job_restarts(
    tmp_path, data_dir
):
    """SIGKILL of the sweep's own process in job 0 before any checkpoint: job 0 reads `incomplete`, the
    dead process's claim refuses a plain rerun and is taken over by resume=true, which runs both jobs."""
    from seqlab.sweeps.summary import summarize

    sweep_dir = tmp_path / "sweep"
    args = [*TINY_MNIST, "model.net.hidden_dim=8,16"]
    kill = [
        "+callbacks.kill._target_=tests.helpers.KillAt",
        "+callbacks.kill.epoch=0",
        "+callbacks.kill.batch=1",
    ]
    killed = sweep_cli([*args, *kill], sweep_dir, data_dir)
    assert killed.returncode == -9
    [row] = summarize(sweep_dir, plots=False)
    assert row["status"] == "incomplete" and "killed" in row["error"]
    owner = json.loads((sweep_dir / ".seqlab_claim.json").read_text())  # left by the killed process

    refused = sweep_cli(args, sweep_dir, data_dir)
    assert refused.returncode == 1 and "that is gone: resume=true continues that run" in refused.stderr
    resumed = sweep_cli([*args, "resume=true"], sweep_dir, data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"warning: {sweep_dir}: taking over the claim of pid {owner['pid']}" in resumed.stderr
    assert [(r["job"], r["status"]) for r in read_summary(sweep_dir)] == [("0", "done"), ("1", "done")]


def test_every_imdb_table_sweep_names_its_optimizer():
    """The results tables come from sweeps that set the optimizer themselves, so an experiment's default
    optimizer (Adam for imdb_lstm and imdb_gru) never changes a regenerated table."""
    from omegaconf import OmegaConf

    from seqlab.config import CONF_DIR

    for path in sorted(Path(CONF_DIR, "sweep").glob("imdb_*.yaml")):
        params = OmegaConf.load(path).hydra.sweeper.params
        experiments = str(params.experiment).split(",")
        if {"imdb_lstm", "imdb_gru"} & set(experiments):
            assert "optimizer" in params, f"{path.name} leaves the optimizer to the experiment's default"


SPACE = {"optimizer.lr": "tag(log, interval(0.0003, 0.03))", "model.net.hidden_dim": "choice(64, 128, 256)"}


def test_queued_trials_come_first_with_their_values_then_the_sampler_draws():
    import optuna

    from seqlab.sweeps.search_space import enqueue_first, suggest

    queued = [{"optimizer.lr": 0.001, "model.net.hidden_dim": 128}, {"model.net.hidden_dim": 64}]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    enqueue_first(study, SPACE, queued)
    asked = []
    for _ in range(3):
        trial = study.ask()
        asked.append({k: suggest(trial, k, v) for k, v in SPACE.items()})
        study.tell(trial, 0.5)
    assert asked[0] == queued[0]
    assert asked[1]["model.net.hidden_dim"] == 64 and 0.0003 <= asked[1]["optimizer.lr"] <= 0.03
    assert asked[2]["optimizer.lr"] not in (0.001, asked[1]["optimizer.lr"])
    enqueue_first(study, SPACE, queued)  # a resumed study has them already
    assert len(study.trials) == 3


@pytest.mark.parametrize(
    ("queued", "says"),
    [
        (
            [{"optimizer.lr": 0.001, "model.net.layers": 2}],
            "sets model.net.layers, not in hydra.sweeper.params",
        ),
        ([{"model.net.hidden_dim": 100}], "enqueue[0].model.net.hidden_dim=100 is outside its search space"),
        ([{}, {"optimizer.lr": 0.5}], "enqueue[0]={} is not a trial"),
        ([{"optimizer.lr": 0.001}, {"optimizer.lr": 0.5}], "enqueue[1].optimizer.lr=0.5 is outside"),
    ],
)
def test_a_queued_trial_outside_the_search_space_is_refused_in_one_line(queued, says):
    import optuna

    from seqlab.sweeps.search_space import enqueue_first

    study = optuna.create_study()
    with pytest.raises(ConfigError, match=says.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        enqueue_first(study, SPACE, queued)
    assert study.trials == [], "nothing queued from a refused list"
