"""audit: the journal of write audit records waiting to become AuditEvents

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-23 22:10:00

The table is declared in fhir_server/storage/audit_journal.py.
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0001'
branch_labels = ('audit',)
depends_on = None

_PID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'audit_journal',
        sa.Column('id', _PID, autoincrement=True, nullable=False),
        sa.Column('record', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table('audit_journal')
