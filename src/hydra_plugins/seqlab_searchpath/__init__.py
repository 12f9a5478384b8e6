"""Adds the folders of `$SEQLAB_CONFIG_PATH` to the config search path of seqlab's commands.

Hydra finds search-path plugins under `hydra_plugins`; the folders come after seqlab's own, so a
user's config adds options beside seqlab's (see docs/extending.md).
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class SeqlabSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from seqlab.user_config import SEQLAB_CONF, env_entries

        if any(str(element.path).endswith(str(SEQLAB_CONF)) for element in search_path.get_path()):
            for entry in env_entries():  # only seqlab's commands: other Hydra apps keep their own path
                search_path.append("seqlab-user", entry)
