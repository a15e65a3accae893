"""Project settings: see https://docs.kedro.org/en/stable/configure/."""

from kedro.config import OmegaConfigLoader

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (conf/<env>/) overrides single parameters, not whole sections.
    "merge_strategy": {"parameters": "soft"},
}
