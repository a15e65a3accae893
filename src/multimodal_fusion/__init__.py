"""multimodal-fusion"""

import multiprocessing

__version__ = "0.1"


def _configure_spawned_worker() -> None:
    """Configures the Kedro project in a worker process started by spawn or
    forkserver that has not configured it.

    Kedro 1.x reads the project's package name *in the worker* to decide whether
    to configure the project there, and a spawned worker has none: its
    ``ParallelRunner`` nodes would run with Kedro's default settings (no project
    hooks, every plugin's hooks, kedro-mlflow's own included, which then fails).
    This happens with ``KEDRO_MP_CONTEXT=spawn`` and on macOS, where spawn is the
    default. A worker imports this package to unpickle its node, so configuring
    here closes the gap. Settings load lazily: nothing more is imported until a
    setting is read. Forked workers inherit the parent's configuration.
    """
    if multiprocessing.parent_process() is None:
        return
    from kedro.framework import project

    if project.PACKAGE_NAME is None:
        project.configure_project(__name__)


_configure_spawned_worker()
