"""Project settings: see https://docs.kedro.org/en/stable/configure/."""

from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf

from multimodal_fusion.hooks import EngineHooks, ProjectHooks
from multimodal_fusion.tracking import tracking_hooks

HOOKS = (ProjectHooks(), EngineHooks(), *tracking_hooks())
# kedro-mlflow's own hook is replaced by the project's subclass of it
# (multimodal_fusion.tracking): registering both would track every run twice.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow",)


class ProjectConfigLoader(OmegaConfigLoader):
    """Kedro's ``OmegaConfigLoader`` plus two resolvers:

    - ``${kedro_env:}``: the name of the environment the configuration is loaded
      for (``local`` when none is given). ``conf/base/globals.yml`` uses it to
      give every environment its own output folder, so two environments run one
      after the other overwrite nothing of each other.
    - ``${project_root:}``: the absolute path of the folder holding ``conf/``
      (``conf/base/mlflow.yml`` puts the tracking store there, whatever the
      working directory).

    Resolvers are process-wide in OmegaConf: like Kedro's ``runtime_params``, they
    are registered again, bound to this loader, on every read.
    """

    def __getitem__(self, key: str) -> dict[str, Any]:
        OmegaConf.register_new_resolver("kedro_env", self.run_env, replace=True)
        OmegaConf.register_new_resolver("project_root", self.project_root, replace=True)
        return super().__getitem__(key)

    def run_env(self) -> str:
        """The environment this loader reads (its default when none was given)."""
        return self.env or self.default_run_env

    def project_root(self) -> str:
        """The folder holding the configuration folder, as an absolute path."""
        return Path(self.conf_source).resolve().parent.as_posix()


CONFIG_LOADER_CLASS = ProjectConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (conf/<env>/) overrides single parameters and tracking
    # settings, not whole sections.
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
    "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]},
}
