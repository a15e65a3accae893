"""The project's pipelines, one subpackage each, and what their wiring shares."""

import functools


class named_partial(functools.partial):  # noqa: N801 (used like functools.partial)
    """``functools.partial`` known by its function's name, which Kedro shows
    for the node. A plain partial named with ``update_wrapper`` loses the name
    in ParallelRunner's workers (multiprocessing pickles partials without their
    attributes), and Kedro then warns about every such node. Its type hints
    are those of its function (Kedro reads them for the node's inputs)."""

    @property
    def __name__(self) -> str:
        return self.func.__name__

    @property
    def __wrapped__(self):
        return self.func

    @property
    def __annotations__(self) -> dict:
        return self.func.__annotations__
