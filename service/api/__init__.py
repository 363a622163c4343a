"""The thin HTTP layer: routes, schemas, dependencies and problem+json errors."""
