"""auth: registered clients, revoked tokens, used client assertions, the signing key

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 12:30:00

The tables are declared in fhir_server/auth/schema.py.
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = ('auth',)
depends_on = None


def upgrade() -> None:
    op.create_table(
        'auth_client',
        sa.Column('client_id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('organization', sa.String(length=128), nullable=True),
        sa.Column('unrestricted', sa.Boolean(), nullable=False),
        sa.Column('scopes', sa.Text(), nullable=False),
        sa.Column('secret_hash', sa.String(length=256), nullable=True),
        sa.Column('jwks', sa.Text(), nullable=True),
        sa.Column('created', sa.DateTime(), nullable=False),
        sa.Column('revoked', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('client_id'),
    )
    op.create_table(
        'auth_revoked_token',
        sa.Column('jti', sa.String(length=64), nullable=False),
        sa.Column('client_id', sa.String(length=64), nullable=False),
        sa.Column('expires', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('jti'),
    )
    op.create_index('ix_auth_revoked_token_expires', 'auth_revoked_token', ['expires'], unique=False)
    op.create_table(
        'auth_client_assertion',
        sa.Column('client_id', sa.String(length=64), nullable=False),
        sa.Column('jti', sa.String(length=256), nullable=False),
        sa.Column('expires', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('client_id', 'jti'),
    )
    op.create_index('ix_auth_client_assertion_expires', 'auth_client_assertion', ['expires'], unique=False)
    op.create_table(
        'auth_signing_key',
        sa.Column('slot', sa.String(length=16), nullable=False),
        sa.Column('kid', sa.String(length=64), nullable=False),
        sa.Column('private_key', sa.Text(), nullable=False),
        sa.Column('created', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('slot'),
    )


def downgrade() -> None:
    op.drop_table('auth_signing_key')
    op.drop_index('ix_auth_client_assertion_expires', table_name='auth_client_assertion')
    op.drop_table('auth_client_assertion')
    op.drop_index('ix_auth_revoked_token_expires', table_name='auth_revoked_token')
    op.drop_table('auth_revoked_token')
    op.drop_table('auth_client')
