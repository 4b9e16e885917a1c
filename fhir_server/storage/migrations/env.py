"""Alembic environment: runs on the connection handed over by ``Database.migrate``."""

from alembic import context

from fhir_server.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` command line: build a connection from the ini URL
    from sqlalchemy import create_engine

    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    connection = engine.connect()

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
