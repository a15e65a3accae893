"""The README's promises that a test can hold: its catalog example reads real
data as written, and every documentation page it links exists."""

import re
from pathlib import Path

import yaml
from kedro.io import DataCatalog

from tests.toy_data import write_toy_dataset

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _catalog_example() -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)
    (block,) = [b for b in blocks if "raw_audio:" in b]
    return block


def test_readme_catalog_example_reads_a_dataset(tmp_path):
    paths = write_toy_dataset(tmp_path, n=12)
    text = (
        _catalog_example()
        .replace("/data/texts.csv", str(paths["texts"]))
        .replace("/data/audio", str(paths["audio"]))
        .replace("/data/labels.csv", str(paths["labels"]))
    )
    catalog = DataCatalog.from_config(yaml.safe_load(text))
    assert len(catalog.load("raw_texts")) == 12
    assert len(catalog.load("raw_labels")) == 12
    assert len(catalog.load("raw_audio")) == 12


def test_readme_links_point_at_pages_that_exist():
    links = re.findall(r"\]\(([^)#]+\.md)(?:#[^)]*)?\)", README)
    assert links, "the README links no documentation page"
    for page in ("README.md", *(link for link in links)):
        path = ROOT / page
        assert path.is_file(), f"README links {page}, which does not exist"
    for page in (ROOT / "docs").glob("*.md"):
        for link in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / link).is_file(), f"{page.name} links {link}"
