"""`hydra/sweeper=seqlab_basic` (the default of seqlab's commands): Hydra accepts sweepers only from classes
defined under `hydra_plugins`. The sweeper lives in `seqlab.sweeps.report`."""

from seqlab.sweeps import report


class ReportingSweeper(report.ReportingSweeper):
    """seqlab.sweeps.report.ReportingSweeper, registered where Hydra looks for plugins."""
