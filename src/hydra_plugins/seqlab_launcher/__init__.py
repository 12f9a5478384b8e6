"""`hydra/launcher=parallel` and `hydra/launcher=slurm` (with its `wait` key): Hydra accepts launchers only
from classes defined under `hydra_plugins`. They live in `seqlab.sweeps.parallel_launcher` and `seqlab.sweeps.slurm_launcher`."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from seqlab.sweeps import parallel_launcher


class ParallelLauncher(parallel_launcher.ParallelLauncher):
    """seqlab.sweeps.parallel_launcher.ParallelLauncher, registered where Hydra looks for plugins."""


try:  # the SLURM launcher builds on hydra-submitit-launcher (pip install -e .[cluster])
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf
except ImportError:
    SlurmQueueConf = None

if SlurmQueueConf is not None:
    from seqlab.sweeps import slurm_launcher

    class SlurmLauncher(slurm_launcher.SlurmLauncher):
        """seqlab.sweeps.slurm_launcher.SlurmLauncher, registered where Hydra looks for plugins."""

    @dataclass
    class SeqlabSlurmConf(SlurmQueueConf):
        """submitit's SLURM settings, and `wait`: false submits the sweep and returns at once."""

        _target_: str = "hydra_plugins.seqlab_launcher.SlurmLauncher"
        wait: bool = True

    # conf/hydra/launcher/slurm.yaml builds on this node (a structured config: a mistyped key is refused).
    ConfigStore.instance().store(
        group="hydra/launcher", name="seqlab_slurm", node=SeqlabSlurmConf(), provider="seqlab"
    )
