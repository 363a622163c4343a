"""The migrations build the same schema as the models, and go down and up again cleanly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from service.adapters.db import migrate
from service.adapters.schema import metadata


def test_schema_matches_the_models(db: Engine) -> None:
    with db.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_downgrade_to_base_and_upgrade_again(db: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    from service.adapters.db import migrations_dir

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    with db.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(inspect(db).get_table_names()) <= {"alembic_version"}
    migrate(db)
    assert {"accounts", "api_keys"} <= set(inspect(db).get_table_names())
