"""multimodal-fusion"""

import multiprocessing

__version__ = "0.1"


def _configure_spawned_worker() -> None:
    """Gives a worker process started by spawn or forkserver the project's Kedro
    settings.

    Kedro 1.x configures the project in a ``ParallelRunner`` worker only when it
    finds the project's package name there, and a spawned worker has none: its
    nodes ran with Kedro's default settings (no project hooks and every plugin's
    hooks, kedro-mlflow's own included, which then failed). This happens with
    ``KEDRO_MP_CONTEXT=spawn`` and on macOS, where spawn is the default. A worker
    imports this package to unpickle its node, so the settings are set here.
    Only the settings and pipelines, not the package name: with a package name,
    Kedro's own set-up runs in the worker and, from its second node on, fails
    (its logging configuration ends up containing itself). Settings load
    lazily; forked workers inherit the parent's configuration.
    """
    if multiprocessing.parent_process() is None:
        return
    from kedro.framework import project

    if project.PACKAGE_NAME is None:
        project.settings.configure(f"{__name__}.settings")
        project.pipelines.configure(f"{__name__}.pipeline_registry")


_configure_spawned_worker()
