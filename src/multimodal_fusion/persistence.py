"""Safe persistence of fitted objects, for the model package.

A *state* is what a fitted object needs to predict, as plain data: nested dicts
and lists of JSON scalars, NumPy arrays, fitted scikit-learn transformers from an
allowlist, and Keras models. :func:`write_state` stores it in a folder as

- ``state.json``: the structure and every scalar,
- ``arrays.npz``: every array (read back with ``allow_pickle=False``),
- ``keras/<n>.keras``: every network, in Keras' native format (read back with
  ``safe_mode=True``: no Lambda layers, no arbitrary code),

and :func:`read_state` reads it back. Nothing is unpickled, so loading a state
cannot run code, whatever the files hold: a file swapped for a pickle is refused
with an error that names it.
"""

from __future__ import annotations

import inspect
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cross_decomposition import CCA
from sklearn.decomposition import PCA, TruncatedSVD

STATE_FILE = "state.json"
ARRAYS_FILE = "arrays.npz"
KERAS_FOLDER = "keras"
# Fitted scikit-learn transformers a state may hold: their parameters and learned
# attributes are plain scalars and arrays.
SKLEARN_TYPES = {cls.__name__: cls for cls in (CCA, PCA, TruncatedSVD)}


# Our estimators that can turn into a state and back (see :class:`Stateful`).
STATEFUL_TYPES: dict[str, type] = {}


class UnsafeStateError(ValueError):
    """A stored state cannot be read safely or is not what was written."""


class Stateful:
    """``get_state`` / ``from_state`` for an estimator that follows
    scikit-learn's conventions (or a dataclass): its ``__init__`` arguments,
    stored under the same names, and its learned attributes (public names ending
    in ``_``). Learned
    sets and arrays of Python objects (labels) become lists in the state and
    come back as they were; nested estimators (late fusion's members) become
    their own states. Subclasses register themselves by class name, so a state
    names the class to rebuild, from this allowlist only.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        STATEFUL_TYPES[cls.__name__] = cls

    def get_params(self) -> dict[str, Any]:
        """The ``__init__`` arguments, as stored (scikit-learn's convention)."""
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    def get_state(self) -> dict[str, Any]:
        """The hyperparameters and the learned attributes, as plain data."""
        params = {name: _to_plain(value) for name, value in self.get_params().items()}
        fitted = {
            name: _to_plain(value)
            for name, value in vars(self).items()
            if name.endswith("_") and not name.startswith("_")
        }
        return {"class": type(self).__name__, "params": params, "fitted": fitted}

    @staticmethod
    def from_state(state: dict[str, Any]) -> Any:
        """The estimator a :meth:`get_state` described, ready to predict: built
        by the class the state names, from the allowlist only."""
        if state.get("class") not in STATEFUL_TYPES:
            raise UnsafeStateError(
                f"'{state.get('class')}' is not an estimator a state may hold "
                f"({sorted(STATEFUL_TYPES)})"
            )
        return STATEFUL_TYPES[state["class"]].rebuild(state)

    @classmethod
    def rebuild(cls, state: dict[str, Any]) -> Any:
        """This class's estimator from its state (subclasses with learned
        attributes that are not plain data override it)."""
        params = {name: _from_plain(value) for name, value in state["params"].items()}
        estimator = cls(**params)
        for name, value in state["fitted"].items():
            setattr(estimator, name, _from_plain(value))
        return estimator


def _to_plain(value: Any) -> Any:
    if isinstance(value, Stateful):
        return {"$stateful": value.get_state()}
    if isinstance(value, set):
        return {"$set": sorted(value)}
    if isinstance(value, np.ndarray) and value.dtype.hasobject:
        return {"$objects": value.tolist()}
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


def _from_plain(value: Any) -> Any:
    if isinstance(value, dict):
        if "$stateful" in value:
            return Stateful.from_state(value["$stateful"])
        if "$set" in value:
            return set(value["$set"])
        if "$objects" in value:
            return np.array(value["$objects"], dtype=object)
        return {k: _from_plain(v) for k, v in value.items()}
    return value


def write_state(state: Any, folder: Path) -> None:
    """Writes ``state`` into ``folder`` (created if needed).

    Raises:
        TypeError: for a value that is not plain data, an array, an allowlisted
            scikit-learn transformer or a Keras model.
    """
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    networks: list[Any] = []

    def encode(value: Any, where: str) -> Any:  # noqa: PLR0911 - one case a kind
        if isinstance(value, dict):
            return {str(k): encode(v, f"{where}.{k}") for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, int | float):
            return value
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise TypeError(f"{where}: arrays of Python objects are not stored")
            key = f"a{len(arrays)}"
            arrays[key] = value
            return {"$array": key}
        if type(value) in SKLEARN_TYPES.values():
            return {
                "$sklearn": type(value).__name__,
                "params": encode(value.get_params(), f"{where}.params"),
                "attributes": encode(vars(value), f"{where}.attributes"),
            }
        if hasattr(value, "save") and hasattr(value, "get_config"):
            name = f"{KERAS_FOLDER}/{len(networks)}.keras"
            networks.append(value)
            (folder / KERAS_FOLDER).mkdir(exist_ok=True)
            value.save(folder / name)
            return {"$keras": name}
        raise TypeError(f"{where}: a {type(value).__name__} cannot be stored safely")

    structure = encode(state, "state")
    # Key order is kept: it carries meaning (the order of a network's inputs).
    (folder / STATE_FILE).write_text(json.dumps(structure, indent=1))
    np.savez(folder / ARRAYS_FILE, **arrays)


def read_state(folder: Path) -> Any:
    """Reads what :func:`write_state` wrote, without unpickling anything.

    Raises:
        UnsafeStateError: naming the file, when a file is missing, is not of its
            format (a pickle in place of the arrays, say) or holds a network
            that Keras' safe mode refuses.
    """
    try:
        structure = json.loads((folder / STATE_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UnsafeStateError(
            f"'{folder / STATE_FILE}' is missing or not JSON ({err})"
        ) from err
    arrays = _read_arrays(folder / ARRAYS_FILE)

    def decode(value: Any) -> Any:
        if isinstance(value, list):
            return [decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "$array" in value:
            return arrays[value["$array"]]
        if "$keras" in value:
            return _read_network(folder, value["$keras"])
        if "$sklearn" in value:
            return _sklearn_object(value, decode)
        return {k: decode(v) for k, v in value.items()}

    return decode(structure)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise UnsafeStateError(
            f"'{path}' is not a NumPy archive of plain arrays ({err}); it was "
            "changed after the package was written: rebuild the package"
        ) from err


def _read_network(folder: Path, name: str) -> Any:
    path = (folder / name).resolve()
    if folder.resolve() not in path.parents or path.suffix != ".keras":
        raise UnsafeStateError(f"'{name}' is not a Keras file inside '{folder}'")
    return read_keras(path)


def read_keras(path: Path) -> Any:
    """A ``.keras`` file's model, loaded in safe mode (no Lambda code), with
    the project's layers registered.

    Raises:
        UnsafeStateError: when it is not a model that loads that way.
    """
    import keras

    import multimodal_fusion.fusions.networks  # noqa: F401 - registers our layers

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # Keras raises many kinds for a bad or unsafe file
        raise UnsafeStateError(
            f"'{path}' is not a Keras model that loads in safe mode ({err})"
        ) from err


def _sklearn_object(value: dict[str, Any], decode) -> Any:
    cls = SKLEARN_TYPES.get(value["$sklearn"])
    if cls is None:
        raise UnsafeStateError(
            f"'{value['$sklearn']}' is not a scikit-learn type a state may hold "
            f"({sorted(SKLEARN_TYPES)})"
        )
    params = decode(value["params"])
    estimator = cls(**params)
    estimator.__dict__.update(decode(value["attributes"]))
    return estimator
