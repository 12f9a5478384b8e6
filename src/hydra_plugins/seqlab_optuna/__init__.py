"""`hydra/sweeper=seqlab_optuna`: Hydra accepts sweepers only from classes defined under `hydra_plugins`.

The search itself lives in `seqlab.sweeps.optuna_search`.
"""

from seqlab.sweeps import optuna_search


class OptunaSweeper(optuna_search.OptunaSweeper):
    """seqlab.sweeps.optuna_search.OptunaSweeper, registered where Hydra looks for plugins."""
