"""``FileFolderDataset`` saves a dict of files (relative path → bytes) as a
folder and loads it back, on any filesystem fsspec reaches, versioned like any
Kedro dataset: the export pipeline's ``model_exports``."""

from __future__ import annotations

from kedro.io.core import get_filepath_str

from .file_dataset import FileDataset


class FileFolderDataset(FileDataset[dict[str, bytes], dict[str, bytes]]):
    """A folder of files, as ``{relative posix path: bytes}``.

    Examples:
        .. code-block:: yaml

            model_exports:
              type: multimodal_fusion.datasets.FileFolderDataset
              filepath: data/local/06_models/model_exports
              versioned: true
    """

    def load(self) -> dict[str, bytes]:
        root = self._load_path().rstrip("/")
        found = {}
        for path in sorted(self._fs.find(root)):
            name = path[len(root) :].lstrip("/")
            with self._fs.open(path, "rb") as stream:
                found[name] = stream.read()
        return found

    def save(self, data: dict[str, bytes]) -> None:
        root = get_filepath_str(self._get_save_path(), self._protocol)
        for name, content in data.items():
            if name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"{name!r} is not a path inside the folder")
            path = f"{root}/{name}"
            self._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            with self._fs.open(path, "wb") as stream:
                stream.write(content)
        self._invalidate_cache()
