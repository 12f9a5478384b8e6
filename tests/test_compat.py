"""One test per library internal seqlab relies on (seqlab/compat.py): an upgrade that breaks one fails here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import lightning as L
import pytest
import torch
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from seqlab import compat


class Probe(L.LightningModule):
    """Records what the compat helpers read at each training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)
        self.seen: list[tuple[int, int, int]] = []

    def training_step(self, batch, batch_idx):
        trainer = compat.attached_trainer(self)
        self.seen.append(
            (batch_idx, compat.batches_done_in_epoch(trainer), compat.total_batch_index(trainer))
        )
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class CountingData(L.LightningDataModule):
    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(6, 2)), batch_size=2)

    def state_dict(self):
        return {"marker": 7}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    probe, data = Probe(), CountingData()
    assert compat.attached_trainer(probe) is None, "a module outside a trainer has none"
    trainer = L.Trainer(max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path_factory.mktemp("fit"))  # fmt: skip
    trainer.fit(probe, data)
    path = tmp_path_factory.mktemp("ckpt") / "probe.ckpt"
    trainer.save_checkpoint(path)
    return probe, data, path


def test_the_batch_counters_count_done_batches_in_the_epoch_and_all_batches_overall(fitted):
    probe, _, _ = fitted
    # at a step: batches of this epoch already processed (the one under way not yet), and the overall index
    assert probe.seen == [(0, 0, 0), (1, 1, 1), (2, 2, 2), (0, 0, 3), (1, 1, 4), (2, 2, 5)]


def test_a_datamodule_state_is_stored_under_its_class_name(fitted):
    _, data, path = fitted
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint[compat.datamodule_state_key(data)] == {"marker": 7}


def test_compiling_in_place_is_detected():
    module = nn.Linear(2, 2)
    assert not compat.is_compiled(module)
    module.compile()
    assert compat.is_compiled(module)


class SigtermAtFirstBatch(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == 0:
            os.kill(os.getpid(), signal.SIGTERM)


def test_lightning_ends_fit_on_sigterm_with_the_stop_exception(tmp_path):
    trainer = L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                        callbacks=[SigtermAtFirstBatch()], default_root_dir=tmp_path)  # fmt: skip
    probe = Probe()
    with pytest.raises(compat.StopTraining):
        trainer.fit(probe, CountingData())
    assert len(probe.seen) <= 2, "it stops at once, not at the epoch end"


def test_hydra_names_the_failing_key_in_its_instantiation_message():
    with pytest.raises(InstantiationException) as err:
        instantiate({"model": {"net": {"_target_": "torch.nn.Linear", "in_features": "x"}}}).model.net  # noqa: B018
    assert compat.instantiation_error_key(str(err.value)) == "model.net"
    assert compat.instantiation_error_key("no key here") is None


def test_a_job_return_carries_its_error_and_can_be_marked_completed():
    error = ValueError("bad")
    failed = JobReturn(status=JobStatus.FAILED, _return_value=error)
    assert compat.job_error(failed) is error
    with pytest.raises(ValueError):
        failed.return_value  # noqa: B018 (the public accessor re-raises: why the private field is read)
    done = compat.as_completed(failed)
    assert (
        done.status == JobStatus.COMPLETED and done.return_value is None and failed.status == JobStatus.FAILED
    )
    made = compat.failed_job(["seed=1"], error)
    assert (
        made.status == JobStatus.FAILED and made.overrides == ["seed=1"] and compat.job_error(made) is error
    )
    other = compat.with_return_value(made, KeyError("k"), cfg=None)
    assert (
        isinstance(compat.job_error(other), KeyError)
        and other.cfg is None
        and compat.job_error(made) is error
    )


def test_hydras_basic_sweeper_is_where_seqlab_extends_it():
    assert callable(compat.BasicSweeper.sweep) and callable(compat.BasicSweeper.setup)


def test_exit_handlers_can_be_run_and_cleared_before_a_forked_job_ends():
    code = (
        "import atexit, os\n"
        "from seqlab.compat import clear_exit_handlers, run_exit_handlers\n"
        "atexit.register(print, 'inherited')\n"
        "clear_exit_handlers()\n"
        "atexit.register(print, 'own')\n"
        "run_exit_handlers()\n"
        "os._exit(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["own"], out.stderr
