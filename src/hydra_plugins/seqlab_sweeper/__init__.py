"""`hydra/sweeper=seqlab_basic` (the default of seqlab's commands): Hydra accepts sweepers only from classes
defined under `hydra_plugins`. The sweeper lives in `seqlab.sweep_report`."""

from seqlab import sweep_report


class ReportingSweeper(sweep_report.ReportingSweeper):
    """seqlab.sweep_report.ReportingSweeper, registered where Hydra looks for plugins."""
