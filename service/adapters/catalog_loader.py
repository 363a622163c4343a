"""Reads catalog YAML into a validated domain Catalog, naming the file and path in every error."""

from __future__ import annotations

from pathlib import Path

import yaml

from service.domain.catalog import Catalog, CatalogError, CatalogHistory, CatalogIssue


def load_catalog(path: Path | str) -> Catalog:
    """Load and validate; raises CatalogError whose message starts with the file name."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(
            [CatalogIssue("(file)", f"cannot read: {exc.strerror}")], str(path)
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(document)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise CatalogError([CatalogIssue(where, f"invalid YAML: {problem}")], path.name) from None
    if not isinstance(document, dict):
        raise CatalogError([CatalogIssue("(root)", "the catalog must be a mapping")], path.name)
    try:
        return Catalog.parse(document)
    except CatalogError as exc:
        raise exc.with_source(path.name) from None


CATALOG_SUFFIXES = (".yaml", ".yml")


def catalog_files(path: Path | str) -> list[Path]:
    """The catalog files at `path`: the file itself, or every YAML file in the directory."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    return sorted(p for p in path.iterdir() if p.suffix in CATALOG_SUFFIXES and p.is_file())


def load_catalogs(path: Path | str) -> CatalogHistory:
    """Every catalog version at `path` (a file, or a directory of one file per version),
    each validated, then checked against the others; CatalogError names file and spot."""
    issues: list[CatalogIssue] = []
    versions: list[tuple[str, Catalog]] = []
    for file in catalog_files(path):
        try:
            versions.append((file.name, load_catalog(file)))
        except CatalogError as exc:
            issues += [CatalogIssue(f"{exc.source}: {i.path}", i.message) for i in exc.issues]
    if issues:
        raise CatalogError(issues)
    try:
        return CatalogHistory.check(versions)
    except CatalogError as exc:
        if not versions:
            raise exc.with_source(str(path)) from None
        raise
