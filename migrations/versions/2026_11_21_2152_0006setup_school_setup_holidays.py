"""school set-up: holidays (days without lessons inside a school year)

Revision ID: 0006setup
Revises: 0003user_prefs
Create Date: 2026-11-21 21:52:52.333057
"""

import sqlalchemy as sa
from alembic import op

revision = '0006setup'
down_revision = '0003user_prefs'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('holidays',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_year_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('starts_on', sa.Date(), nullable=False),
    sa.Column('ends_on', sa.Date(), nullable=False),
    sa.CheckConstraint('starts_on <= ends_on', name=op.f('ck_holidays_dates')),
    sa.ForeignKeyConstraint(['school_year_id'], ['school_years.id'], name=op.f('fk_holidays_school_year_id_school_years')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_holidays'))
    )
    with op.batch_alter_table('holidays', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_holidays_school_year_id'), ['school_year_id'], unique=False)



def downgrade():
    with op.batch_alter_table('holidays', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_holidays_school_year_id'))

    op.drop_table('holidays')
