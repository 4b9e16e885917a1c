"""reference: (sp, url) and (sp, identifier_value) become partial indexes of the rows that have one

Revision ID: 0007
Revises: 0001
Create Date: 2026-11-23 23:15:00

Most references are ``Type/id``: their rows have neither a url nor an identifier, and every
such row cost two inserts into these indexes (at the NULL end of its parameter) that no search
reads (see fhir_server/storage/index/reference.py).
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0001'
branch_labels = ('reference',)
depends_on = None

_COLUMNS = ('url', 'identifier_value')


def upgrade() -> None:
    for column in _COLUMNS:
        where = sa.text(f'{column} IS NOT NULL')
        op.drop_index(f'ix_idx_reference_sp_{column}', table_name='idx_reference')
        op.create_index(f'ix_idx_reference_sp_{column}', 'idx_reference', ['sp', column], unique=False,
                        sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    for column in _COLUMNS:
        op.drop_index(f'ix_idx_reference_sp_{column}', table_name='idx_reference')
        op.create_index(f'ix_idx_reference_sp_{column}', 'idx_reference', ['sp', column], unique=False)
