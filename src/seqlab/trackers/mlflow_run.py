"""`logger=mlflow`: Lightning's MLFlowLogger on a SQLite store or a server probed before training, one
MLflow run per run dir."""

from __future__ import annotations

import argparse
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from seqlab.config import flatten
from seqlab.errors import ConfigError
from seqlab.trackers.common import IDS_FILE, RUN_FILES, first_line, read_ids, record_id, require, run_label

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0


def redact(uri: str) -> str:
    """`uri` without a password, for messages and the ids file."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def check_tracking_uri(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Refuse, before any training, a store MLflow would refuse later or that does not answer."""
    scheme = urlsplit(uri).scheme
    if scheme in ("", "file") and uri != "databricks":
        import mlflow.environment_variables as mlflow_env

        if not mlflow_env.MLFLOW_ALLOW_FILE_STORE.get():
            raise ConfigError(
                f"logger.mlflow.tracking_uri={uri!r}: MLflow 3 refuses its old file store; log to a database, "
                "e.g. logger.mlflow.tracking_uri=sqlite:///outputs/mlflow.db (`mlflow migrate-filestore` "
                "moves old runs there), or set MLFLOW_ALLOW_FILE_STORE=true"
            )
    if scheme not in ("http", "https"):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):
            pass
    except urllib.error.HTTPError:
        return  # something answers (a login, a proxy): MLflow's own requests say the rest
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise ConfigError(
            f"logger.mlflow.tracking_uri={redact(uri)}: no MLflow server answers there within {timeout_s:g} s "
            f"({reason}); start one (mlflow server --backend-store-uri sqlite:///mlflow.db --host HOST "
            "--port PORT), point logger.mlflow.tracking_uri=... (or MLFLOW_TRACKING_URI) at a running one, "
            "or leave both unset to log to the local SQLite store"
        ) from None


def sqlite_artifacts(uri: str) -> str | None:
    """For a SQLite store, its artifact folder beside the database (MLflow's default is ./mlruns wherever
    the process runs); the parent folder of the database is made if missing."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    if str(database) in ("", ":memory:"):
        return None
    database.parent.mkdir(parents=True, exist_ok=True)
    return (database.parent.absolute() / "mlartifacts").as_uri()


class MLflowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger, continuing the run named in the run dir's `tracker_ids.json` if there
    is one. Params are the composed config within MLflow's limits (values up to 6000 characters, not
    Lightning's 250); a resumed run keeps its first params (MLflow's cannot change) and adds new ones."""

    def __init__(
        self,
        run_dir: str,
        tracking_uri: str,
        experiment_name: str,
        run_name: str | None = None,
        artifact_location: str | None = None,
        tags: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        require("mlflow")
        from mlflow.exceptions import MlflowException

        self.run_dir = Path(run_dir)
        tracking_uri = str(tracking_uri)
        check_tracking_uri(tracking_uri)
        self.resumed_id: str | None = read_ids(self.run_dir).get("mlflow", {}).get("run_id")
        try:
            super().__init__(
                experiment_name=experiment_name,
                run_name=run_name or run_label(self.run_dir),
                tracking_uri=tracking_uri,
                tags={"run_dir": str(self.run_dir.absolute()), **(tags or {})},
                artifact_location=artifact_location or sqlite_artifacts(tracking_uri),
                run_id=self.resumed_id,
                **kwargs,
            )
        except MlflowException as err:
            raise ConfigError(
                f"logger.mlflow.tracking_uri={redact(tracking_uri)}: {first_line(err)}"
            ) from None

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._initialized:
            return self._mlflow_client
        uri = redact(self._tracking_uri)
        try:
            if self._run_id is None and self._experiment_id is None:
                self._experiment_id = self._experiment_named(self._experiment_name)
            client = MLFlowLogger.experiment.fget(self)
            if self.resumed_id:
                client.update_run(self.resumed_id, status="RUNNING")
        except ConfigError:
            raise
        except Exception as err:  # what the store raises (MLflow's, SQLAlchemy's, the network's): one line
            if self.resumed_id:
                raise ConfigError(
                    f"{self.run_dir / IDS_FILE} names MLflow run {self.resumed_id}, which {uri} cannot give "
                    f"({first_line(err)}): point logger.mlflow.tracking_uri at the store it was logged to, or "
                    "delete that file to log this run as a new one"
                ) from None
            raise ConfigError(f"logger.mlflow: cannot log to {uri}: {first_line(err)}") from None
        record = {"run_id": self._run_id, "experiment_id": self._experiment_id, "tracking_uri": uri}
        record_id(self.run_dir, "mlflow", record)
        return client

    def _experiment_named(self, name: str) -> str:
        """The id of experiment `name`, created if missing (by this job or, at the same moment, another)."""
        from mlflow.exceptions import MlflowException

        client = self._mlflow_client
        for _ in range(2):
            found = client.get_experiment_by_name(name)
            if found is not None and found.lifecycle_stage == "deleted":
                raise ConfigError(
                    f"logger.mlflow.experiment_name={name!r} is a deleted experiment of {redact(self._tracking_uri)}:"
                    f" restore it (mlflow experiments restore --experiment-id {found.experiment_id}) or choose "
                    "another logger.mlflow.experiment_name=..."
                )
            if found is not None:
                return found.experiment_id
            try:
                return client.create_experiment(name, artifact_location=self._artifact_location)
            except MlflowException as err:
                if err.error_code != "RESOURCE_ALREADY_EXISTS":  # another job of the sweep made it first
                    raise
        raise ConfigError(f"logger.mlflow: experiment {name!r} can be neither found nor created")

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        from mlflow.entities import Param
        from mlflow.utils import validation as limits

        client = self.experiment
        earlier = client.get_run(self.run_id).data.params if self.resumed_id else {}
        fresh: dict[str, str] = {}
        for key, value in flatten(
            vars(params) if isinstance(params, argparse.Namespace) else params or {}
        ).items():
            name = re.sub(r"[^\w./\- :]", "_", str(key))[: limits.MAX_ENTITY_KEY_LENGTH]
            fresh[name] = str(value)[: limits.MAX_PARAM_VAL_LENGTH]
        new = [Param(k, v) for k, v in fresh.items() if k not in earlier]
        for i in range(0, len(new), limits.MAX_PARAMS_TAGS_PER_BATCH):
            batch = new[i : i + limits.MAX_PARAMS_TAGS_PER_BATCH]
            client.log_batch(self.run_id, params=batch, **self._log_batch_kwargs)
        changed = sorted(k for k in fresh if k in earlier and earlier[k] != fresh[k])
        if changed:  # e.g. resume: true
            log.info("MLflow run %s keeps its first values of %s", self.run_id, ", ".join(changed))

    @rank_zero_only
    def log_outcome(self, metrics: Mapping[str, float], best_checkpoint: str | None, step: int) -> None:
        """The final metrics (`final/<name>`, as in metrics.json), the run dir's record files as artifacts,
        the best checkpoint's path as the tag `best_checkpoint`."""
        self.log_metrics({f"final/{k}": v for k, v in metrics.items()}, step=step)
        for path in (self.run_dir / name for name in RUN_FILES):
            if path.is_file():
                folder = str(path.parent.relative_to(self.run_dir))
                self.experiment.log_artifact(self.run_id, str(path), None if folder == "." else folder)
        if best_checkpoint:
            self.experiment.set_tag(self.run_id, "best_checkpoint", str(Path(best_checkpoint).absolute()))
        self.finalize("success")

    @rank_zero_only
    def log_stopped(self) -> None:
        """A run stopped by a signal is KILLED (Lightning marks it FAILED); resuming it sets it RUNNING."""
        if self._initialized:
            self.experiment.set_terminated(self.run_id, "KILLED")
