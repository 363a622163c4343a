"""Reads catalog YAML into a validated domain Catalog, naming the file and path in every error."""

from __future__ import annotations

from pathlib import Path

import yaml

from service.domain.catalog import Catalog, CatalogError, CatalogIssue


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
