"""hl7v2: the inbound store of HL7 v2 messages (raw bytes, status, ACK, problems, resources)

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-23 15:40:00

The table is declared in adapters/hl7v2/inbound_store.py.
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0001'
branch_labels = ('hl7v2',)
depends_on = None

_PID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'hl7_inbound',
        sa.Column('id', _PID, autoincrement=True, nullable=False),
        sa.Column('sender', sa.String(length=400), nullable=False),
        sa.Column('control_id', sa.String(length=200), nullable=True),
        sa.Column('message_type', sa.String(length=40), nullable=True),
        sa.Column('version', sa.String(length=16), nullable=True),
        sa.Column('charset', sa.String(length=40), nullable=True),
        sa.Column('source', sa.String(length=400), nullable=True),
        sa.Column('received_at', sa.DateTime(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('duplicate_of', _PID, nullable=True),
        sa.Column('raw', sa.LargeBinary(), nullable=False),
        sa.Column('ack', sa.LargeBinary(), nullable=True),
        sa.Column('ack_code', sa.String(length=2), nullable=True),
        sa.Column('problems', sa.Text(), nullable=True),
        sa.Column('resources', sa.Text(), nullable=True),
        sa.Column('processed_at', sa.DateTime(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('uq_hl7_inbound_sender_control_id', 'hl7_inbound', ['sender', 'control_id'], unique=True,
                    sqlite_where=sa.text('duplicate_of IS NULL'), postgresql_where=sa.text('duplicate_of IS NULL'))
    op.create_index('ix_hl7_inbound_status', 'hl7_inbound', ['status', 'id'], unique=False)
    op.create_index('ix_hl7_inbound_received_at', 'hl7_inbound', ['received_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_hl7_inbound_received_at', table_name='hl7_inbound')
    op.drop_index('ix_hl7_inbound_status', table_name='hl7_inbound')
    op.drop_index('uq_hl7_inbound_sender_control_id', table_name='hl7_inbound')
    op.drop_table('hl7_inbound')
