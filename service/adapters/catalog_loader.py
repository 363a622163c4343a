"""Reads catalog YAML into a validated domain Catalog, naming the file and path in every error."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from service.domain.catalog import (
    Catalog,
    CatalogError,
    CatalogHistory,
    CatalogIssue,
    load_each,
)


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
    files = catalog_files(path)
    versions = load_each((file.name, partial(load_catalog, file)) for file in files)
    try:
        return CatalogHistory.check(versions)
    except CatalogError as exc:
        if not versions:
            raise exc.with_source(str(path)) from None
        raise


# --- catalogs published into the database (adapters.catalog_store) ---------------------------


def canonical_document(catalog: Catalog) -> dict[str, Any]:
    """The catalog as the JSON document it is published as: every field explicit (defaults
    too), so the stored document means the same to any later reader, whatever the file's
    comments, layout or omitted defaults were."""
    return catalog.model_dump(mode="json")


def document_sha256(document: dict[str, Any]) -> str:
    """The fingerprint of a canonical document: two documents with the same meaning have the
    same one (publishing one again is a no-op), any change of meaning gives another."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def catalog_from_document(document: Any, source: str) -> Catalog:
    """A stored document validated again (as a file is); CatalogError names `source`."""
    if not isinstance(document, dict):
        raise CatalogError([CatalogIssue("(root)", "the catalog must be a mapping")], source)
    try:
        return Catalog.parse(document)
    except CatalogError as exc:
        raise exc.with_source(source) from None


def same_document(a: Catalog, b: Catalog) -> bool:
    return canonical_document(a) == canonical_document(b)


def with_published(
    files: CatalogHistory, published: Sequence[tuple[str, Catalog]]
) -> CatalogHistory:
    """The versions at the catalog path and those published into the database, checked
    together (CatalogError names each source and spot). A published version that is also a
    file must be the very same document: a version is immutable, accounts are priced at it."""
    issues: list[CatalogIssue] = []
    extra: list[tuple[str, Catalog]] = []
    for source, catalog in published:
        if catalog.version not in files.names:
            extra.append((source, catalog))
        elif not same_document(files.version(catalog.version), catalog):
            issues.append(
                CatalogIssue(
                    f"{source}: version",
                    f"version '{catalog.version}' is also a file at the catalog path, with "
                    "another document; a version is immutable (accounts are priced at it): "
                    "publish the change as a new version",
                )
            )
    if issues:
        raise CatalogError(issues)
    if not extra:
        return files
    return CatalogHistory.check([*((c.version, c) for c in files.versions), *extra])
