"""access: which patient each resource belongs to, who holds each patient, the organisation tree

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-23 12:40:00

The tables are declared in fhir_server/storage/access.py. A database that already holds
resources gets them filled by ``POST [base]/$reindex`` (run once after upgrading); until then
callers bound to an organisation see no patient data.
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0001'
branch_labels = ('access',)
depends_on = None


def upgrade() -> None:
    op.create_table(
        'access_resource',
        sa.Column('res_type', sa.String(length=64), nullable=False),
        sa.Column('res_id', sa.String(length=64), nullable=False),
        sa.Column('patient_id', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('res_type', 'res_id', 'patient_id', name='pk_access_resource'),
    )
    op.create_index('ix_access_resource_patient', 'access_resource', ['patient_id'], unique=False)
    op.create_table(
        'access_patient_org',
        sa.Column('patient_id', sa.String(length=64), nullable=False),
        sa.Column('org_id', sa.String(length=64), nullable=False),
        sa.Column('source_type', sa.String(length=64), nullable=False),
        sa.Column('source_id', sa.String(length=64), nullable=False),
    )
    op.create_index('ix_access_patient_org_patient_org', 'access_patient_org', ['patient_id', 'org_id'],
                    unique=False)
    op.create_index('ix_access_patient_org_source', 'access_patient_org', ['source_type', 'source_id'],
                    unique=False)
    op.create_table(
        'access_organization',
        sa.Column('org_id', sa.String(length=64), nullable=False),
        sa.Column('parent_id', sa.String(length=64), nullable=True),
        sa.Column('county_wide', sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint('org_id'),
    )
    op.create_index('ix_access_organization_parent', 'access_organization', ['parent_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_access_organization_parent', table_name='access_organization')
    op.drop_table('access_organization')
    op.drop_index('ix_access_patient_org_source', table_name='access_patient_org')
    op.drop_index('ix_access_patient_org_patient_org', table_name='access_patient_org')
    op.drop_table('access_patient_org')
    op.drop_index('ix_access_resource_patient', table_name='access_resource')
    op.drop_table('access_resource')
