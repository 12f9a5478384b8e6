"""The two kinds of user error seqlab reports in one clear message instead of a traceback."""


class ConfigError(ValueError):
    """A config value is wrong; the message names the key, the value and what is allowed."""


class DataError(RuntimeError):
    """A data file is missing, corrupt or not what the task expects."""
