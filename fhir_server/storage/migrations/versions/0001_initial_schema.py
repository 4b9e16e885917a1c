"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 08:33:46.313226
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('idx_date',
    sa.Column('sp', sa.Integer(), nullable=False),
    sa.Column('pid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('grp', sa.SmallInteger(), nullable=True),
    sa.Column('low', sa.DateTime(), nullable=False),
    sa.Column('high', sa.DateTime(), nullable=False)
    )
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.create_index('ix_idx_date_pid_sp', ['pid', 'sp'], unique=False)
        batch_op.create_index('ix_idx_date_sp_high', ['sp', 'high'], unique=False)
        batch_op.create_index('ix_idx_date_sp_low', ['sp', 'low'], unique=False)

    op.create_table('idx_number',
    sa.Column('sp', sa.Integer(), nullable=False),
    sa.Column('pid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('grp', sa.SmallInteger(), nullable=True),
    sa.Column('value', sa.Float(), nullable=False)
    )
    with op.batch_alter_table('idx_number', schema=None) as batch_op:
        batch_op.create_index('ix_idx_number_pid_sp', ['pid', 'sp'], unique=False)
        batch_op.create_index('ix_idx_number_sp_value', ['sp', 'value'], unique=False)

    op.create_table('idx_quantity',
    sa.Column('sp', sa.Integer(), nullable=False),
    sa.Column('pid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('grp', sa.SmallInteger(), nullable=True),
    sa.Column('system', sa.String(length=256), nullable=True),
    sa.Column('code', sa.String(length=64), nullable=True),
    sa.Column('unit', sa.String(length=64), nullable=True),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('canonical_code', sa.String(length=64), nullable=True),
    sa.Column('canonical_value', sa.Float(), nullable=True)
    )
    with op.batch_alter_table('idx_quantity', schema=None) as batch_op:
        batch_op.create_index('ix_idx_quantity_pid_sp', ['pid', 'sp'], unique=False)
        batch_op.create_index('ix_idx_quantity_sp_canonical_code_canonical_value', ['sp', 'canonical_code', 'canonical_value'], unique=False)
        batch_op.create_index('ix_idx_quantity_sp_code_value', ['sp', 'code', 'value'], unique=False)

    op.create_table('idx_reference',
    sa.Column('sp', sa.Integer(), nullable=False),
    sa.Column('pid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('grp', sa.SmallInteger(), nullable=True),
    sa.Column('target_type', sa.String(length=64), nullable=True),
    sa.Column('target_id', sa.String(length=64), nullable=True),
    sa.Column('url', sa.String(length=512), nullable=True),
    sa.Column('identifier_system', sa.String(length=256), nullable=True),
    sa.Column('identifier_value', sa.String(length=256), nullable=True)
    )
    with op.batch_alter_table('idx_reference', schema=None) as batch_op:
        batch_op.create_index('ix_idx_reference_pid_sp', ['pid', 'sp'], unique=False)
        batch_op.create_index('ix_idx_reference_sp_identifier_value', ['sp', 'identifier_value'], unique=False)
        batch_op.create_index('ix_idx_reference_sp_target_id_target_type', ['sp', 'target_id', 'target_type'], unique=False)
        batch_op.create_index('ix_idx_reference_sp_url', ['sp', 'url'], unique=False)
        batch_op.create_index('ix_idx_reference_target_id_target_type', ['target_id', 'target_type'], unique=False)

    op.create_table('idx_string',
    sa.Column('sp', sa.Integer(), nullable=False),
    sa.Column('pid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('grp', sa.SmallInteger(), nullable=True),
    sa.Column('value', sa.String(length=256), nullable=False),
    sa.Column('exact', sa.String(length=256), nullable=False)
    )
    with op.batch_alter_table('idx_string', schema=None) as batch_op:
        batch_op.create_index('ix_idx_string_pid_sp', ['pid', 'sp'], unique=False)
        batch_op.create_index('ix_idx_string_sp_value', ['sp', 'value'], unique=False)

    op.create_table('idx_token',
    sa.Column('sp', sa.Integer(), nullable=False),
    sa.Column('pid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('grp', sa.SmallInteger(), nullable=True),
    sa.Column('system', sa.String(length=256), nullable=True),
    sa.Column('code', sa.String(length=256), nullable=True),
    sa.Column('text', sa.String(length=256), nullable=True),
    sa.Column('type_system', sa.String(length=256), nullable=True),
    sa.Column('type_code', sa.String(length=64), nullable=True)
    )
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.create_index('ix_idx_token_pid_sp', ['pid', 'sp'], unique=False)
        batch_op.create_index('ix_idx_token_sp_code_system', ['sp', 'code', 'system'], unique=False)

    op.create_table('idx_uri',
    sa.Column('sp', sa.Integer(), nullable=False),
    sa.Column('pid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('grp', sa.SmallInteger(), nullable=True),
    sa.Column('uri', sa.String(length=512), nullable=False)
    )
    with op.batch_alter_table('idx_uri', schema=None) as batch_op:
        batch_op.create_index('ix_idx_uri_pid_sp', ['pid', 'sp'], unique=False)
        batch_op.create_index('ix_idx_uri_sp_uri', ['sp', 'uri'], unique=False)

    op.create_table('resource',
    sa.Column('pid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_updated', sa.DateTime(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('content', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('pid'),
    sa.UniqueConstraint('res_type', 'res_id', name='uq_resource_type_id')
    )
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.create_index('ix_resource_type_updated', ['res_type', 'last_updated'], unique=False)
        batch_op.create_index('ix_resource_updated', ['last_updated'], unique=False)

    op.create_table('resource_history',
    sa.Column('pid', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('res_id', sa.String(length=64), nullable=False),
    sa.Column('last_updated', sa.DateTime(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('content', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('pid', 'version')
    )
    with op.batch_alter_table('resource_history', schema=None) as batch_op:
        batch_op.create_index('ix_history_type_updated', ['res_type', 'last_updated'], unique=False)
        batch_op.create_index('ix_history_updated', ['last_updated'], unique=False)

    op.create_table('search_param',
    sa.Column('sp', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('res_type', sa.String(length=64), nullable=False),
    sa.Column('code', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('sp'),
    sa.UniqueConstraint('res_type', 'code', name='uq_search_param_type_code')
    )
    


def downgrade() -> None:
    
    op.drop_table('search_param')
    with op.batch_alter_table('resource_history', schema=None) as batch_op:
        batch_op.drop_index('ix_history_updated')
        batch_op.drop_index('ix_history_type_updated')

    op.drop_table('resource_history')
    with op.batch_alter_table('resource', schema=None) as batch_op:
        batch_op.drop_index('ix_resource_updated')
        batch_op.drop_index('ix_resource_type_updated')

    op.drop_table('resource')
    with op.batch_alter_table('idx_uri', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_uri_sp_uri')
        batch_op.drop_index('ix_idx_uri_pid_sp')

    op.drop_table('idx_uri')
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_token_sp_code_system')
        batch_op.drop_index('ix_idx_token_pid_sp')

    op.drop_table('idx_token')
    with op.batch_alter_table('idx_string', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_string_sp_value')
        batch_op.drop_index('ix_idx_string_pid_sp')

    op.drop_table('idx_string')
    with op.batch_alter_table('idx_reference', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_reference_target_id_target_type')
        batch_op.drop_index('ix_idx_reference_sp_url')
        batch_op.drop_index('ix_idx_reference_sp_target_id_target_type')
        batch_op.drop_index('ix_idx_reference_sp_identifier_value')
        batch_op.drop_index('ix_idx_reference_pid_sp')

    op.drop_table('idx_reference')
    with op.batch_alter_table('idx_quantity', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_quantity_sp_code_value')
        batch_op.drop_index('ix_idx_quantity_sp_canonical_code_canonical_value')
        batch_op.drop_index('ix_idx_quantity_pid_sp')

    op.drop_table('idx_quantity')
    with op.batch_alter_table('idx_number', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_number_sp_value')
        batch_op.drop_index('ix_idx_number_pid_sp')

    op.drop_table('idx_number')
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.drop_index('ix_idx_date_sp_low')
        batch_op.drop_index('ix_idx_date_sp_high')
        batch_op.drop_index('ix_idx_date_pid_sp')

    op.drop_table('idx_date')
    
