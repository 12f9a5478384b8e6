"""The kinds of error seqlab reports in one clear message instead of a traceback."""


class ConfigError(ValueError):
    """A config value is wrong; the message names the key, the value and what is allowed."""


class DataError(RuntimeError):
    """A data file is missing, corrupt or not what the task expects."""


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss); the message names where and what was kept."""


USER_ERRORS = (ConfigError, DataError, TrainingError)
