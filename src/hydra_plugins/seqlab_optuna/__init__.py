"""`hydra/sweeper=seqlab_optuna`: Hydra accepts sweepers only from classes defined under `hydra_plugins`.

The search itself lives in `seqlab.search`.
"""

from seqlab import search


class OptunaSweeper(search.OptunaSweeper):
    """seqlab.search.OptunaSweeper, registered where Hydra looks for plugins."""
