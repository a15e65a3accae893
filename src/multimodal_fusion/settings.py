"""Project settings: see https://docs.kedro.org/en/stable/configure/."""

from typing import Any

from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf

from multimodal_fusion.hooks import ProjectHooks

HOOKS = (ProjectHooks(),)


class ProjectConfigLoader(OmegaConfigLoader):
    """Kedro's ``OmegaConfigLoader`` plus the ``${kedro_env:}`` resolver: the name
    of the environment the configuration is loaded for (``local`` when none is
    given). ``conf/base/globals.yml`` uses it to give every environment its own
    output folder, so two environments run one after the other overwrite
    nothing of each other.

    Resolvers are process-wide in OmegaConf: like Kedro's ``runtime_params``, the
    resolver is registered again, bound to this loader, on every read.
    """

    def __getitem__(self, key: str) -> dict[str, Any]:
        OmegaConf.register_new_resolver("kedro_env", self.run_env, replace=True)
        return super().__getitem__(key)

    def run_env(self) -> str:
        """The environment this loader reads (its default when none was given)."""
        return self.env or self.default_run_env


CONFIG_LOADER_CLASS = ProjectConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (conf/<env>/) overrides single parameters, not whole sections.
    "merge_strategy": {"parameters": "soft"},
}
