"""Adapters: the database, the catalog file and the billing providers."""
