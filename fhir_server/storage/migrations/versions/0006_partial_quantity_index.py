"""quantity: (sp, code, value) becomes a partial index of the rows without a canonical unit

Revision ID: 0006
Revises: 0001
Create Date: 2026-11-23 22:50:00

A quantity in a UCUM unit is searched through (sp, canonical_code, canonical_value) only (see
fhir_server/storage/index/quantity.py); indexing it a second time by its unit as sent cost every
write an index insert that no search used.
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0001'
branch_labels = ('quantity',)
depends_on = None

_WHERE = sa.text('canonical_code IS NULL')


def upgrade() -> None:
    op.drop_index('ix_idx_quantity_sp_code_value', table_name='idx_quantity')
    op.create_index('ix_idx_quantity_sp_code_value', 'idx_quantity', ['sp', 'code', 'value'], unique=False,
                    sqlite_where=_WHERE, postgresql_where=_WHERE)


def downgrade() -> None:
    op.drop_index('ix_idx_quantity_sp_code_value', table_name='idx_quantity')
    op.create_index('ix_idx_quantity_sp_code_value', 'idx_quantity', ['sp', 'code', 'value'], unique=False)
