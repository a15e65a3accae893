"""Project settings: see https://docs.kedro.org/en/stable/configure/."""

from multimodal_fusion.config_loader import CONFIG_LOADER_ARGS, ProjectConfigLoader
from multimodal_fusion.hooks import EngineHooks, ProjectHooks
from multimodal_fusion.tracking import tracking_hooks

HOOKS = (ProjectHooks(), EngineHooks(), *tracking_hooks())
# kedro-mlflow's own hook is replaced by the project's subclass of it
# (multimodal_fusion.tracking): registering both would track every run twice.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow",)

CONFIG_LOADER_CLASS = ProjectConfigLoader
__all__ = [
    "CONFIG_LOADER_ARGS",
    "CONFIG_LOADER_CLASS",
    "DISABLE_HOOKS_FOR_PLUGINS",
    "HOOKS",
]
