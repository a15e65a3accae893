"""``ModelPackageDataset`` saves and loads a
:class:`~multimodal_fusion.package.ModelPackage` as a folder, on any filesystem
fsspec reaches, versioned like any Kedro dataset: the package's version is its
catalog version."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from kedro.io.core import get_filepath_str

from .file_dataset import FileDataset

if TYPE_CHECKING:
    from multimodal_fusion.package import ModelPackage


class ModelPackageDataset(FileDataset["ModelPackage", "ModelPackage"]):
    """A model package folder (``manifest.json`` and its ``state/``).

    Loading reads no pickle and checks every file against the manifest's
    SHA-256 (see :mod:`multimodal_fusion.package`); a remote package is copied
    to a temporary folder first.

    Examples:
        .. code-block:: yaml

            model_package:
              type: multimodal_fusion.datasets.ModelPackageDataset
              filepath: data/local/06_models/model_package
              versioned: true

        Load a given version with ``kedro run --load-versions
        model_package:<version>``.
    """

    def load(self) -> ModelPackage:
        from multimodal_fusion.package import ModelPackage

        load_path = self._load_path()
        if self._protocol == "file":
            return ModelPackage.load(load_path)
        with tempfile.TemporaryDirectory() as folder:
            self._fs.get(load_path, f"{folder}/package", recursive=True)
            return ModelPackage.load(Path(folder) / "package")

    def save(self, data: ModelPackage) -> None:
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        version = self.resolve_save_version() if self._version else None
        if self._protocol == "file":
            data.save(save_path, version=version)
        else:
            with tempfile.TemporaryDirectory() as folder:
                data.save(Path(folder) / "package", version=version)
                self._fs.put(f"{folder}/package", save_path, recursive=True)
        self._invalidate_cache()
