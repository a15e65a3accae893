"""Shared test setup: no telemetry, quiet TensorFlow, writable caches."""

import os
from pathlib import Path

import pytest

os.environ["KEDRO_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault(
    "NUMBA_CACHE_DIR", str(Path(__file__).parents[1] / ".cache/numba")
)
os.environ.setdefault("MPLBACKEND", "Agg")

PROJECT_ROOT = Path(__file__).parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real datasets beside the project; skips when they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def toy_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy on the toy dataset with ``__default__`` run twice (shared
    by the end-to-end and inference tests; only read after that)."""
    from tests.project_copy import QUICK, TOY_N, copy_project, run_session
    from tests.toy_data import write_toy_dataset

    project = copy_project(tmp_path_factory.mktemp("toy") / "project")
    write_toy_dataset(project / "data/01_raw", n=TOY_N)
    for _ in range(2):
        run_session(project, pipeline_name="__default__", runtime_params=QUICK)
    return project


def _shared_fixture(item: pytest.Item) -> bool:
    """Whether ``item`` uses a fixture of the suite's that outlives one test
    (module, package or session scope): its tests must share a worker."""
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", None)
    if defs is None:  # not a plain pytest function: keep it with its module
        return True
    return any(
        fixturedef.scope != "function"
        and getattr(fixturedef.func, "__module__", "").startswith("tests.")
        for fixturedefs in defs.values()
        for fixturedef in fixturedefs
    )


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]):
    """Groups tests for ``make test``'s two pytest-xdist workers
    (``--dist loadgroup``): every test that needs the toy project runs on one
    worker, so it is built once; tests of a module with its own module-scoped
    project or server stay with their module, so that is built once too; any
    other test is scheduled on its own, wherever a worker is free. Without
    xdist, no effect.

    pytest-xdist hands out the largest groups first (the toy project's), then
    single tests in collection order: the ``slow`` ones (whole pipelines) are
    moved to the front of those, so that the last tests handed out are short
    and neither worker waits long for the other at the end.

    The marks are set before pytest-xdist's own hook reads them. That hook
    appends ``@<group>`` to each node id, which is how its scheduler sees the
    group, but pytest-xdist 3.8 writes the attribute pytest < 9.2 kept the id
    in: with pytest 9.2 nothing changes and every test was scheduled on its own
    (pytest-xdist issue #1386), so the toy project and every module-scoped
    project were built on both workers. The suffix is applied here when it is
    missing after every other hook ran.
    """
    for item in items:
        if "toy_project" in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group("toy_project"))
        elif _shared_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    result = yield
    # A worker's option, set by pytest-xdist for --dist loadgroup.
    if getattr(config.option, "loadgroup", False):
        for item in items:
            if mark := item.get_closest_marker("xdist_group"):
                group = mark.args[0]
                if not item.nodeid.endswith(f"@{group}"):
                    _set_nodeid(item, f"{item.nodeid}@{group}")
        # Stable: grouped tests keep their order (their groups go first anyway).
        items.sort(
            key=lambda item: (
                not (
                    item.get_closest_marker("slow")
                    and not item.get_closest_marker("xdist_group")
                )
            )
        )
    return result


def _set_nodeid(item: pytest.Item, nodeid: str) -> None:
    """What pytest-xdist's loadgroup does to a node id, for pytest 9.2's
    structured ids (``Node._id``) as well as the older string (``_nodeid``)."""
    if hasattr(item, "_id"):
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(nodeid)
    else:
        item._nodeid = nodeid
