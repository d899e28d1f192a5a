"""the school year's lifecycle: time zones, languages of instruction, pass/fail subjects,
closed years and assessment plans

Revision ID: 0013year
Revises: 0012transfers
Create Date: 2026-12-06 09:00:00
"""

import sqlalchemy as sa
from alembic import op

import journal.db  # noqa: F401  (custom column types)

revision = "0013year"
down_revision = "0012transfers"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("schools") as batch_op:
        batch_op.add_column(
            sa.Column("time_zone", sa.String(60), server_default="Asia/Almaty", nullable=False)
        )
    with op.batch_alter_table("school_years") as batch_op:
        batch_op.add_column(
            sa.Column("closed_at", journal.db.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("class_groups") as batch_op:
        batch_op.add_column(
            sa.Column("language", sa.String(5), server_default="kk", nullable=False)
        )
    with op.batch_alter_table("subjects") as batch_op:
        batch_op.add_column(
            sa.Column("pass_fail", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_table(
        "assessment_plans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("class_group_id", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("term_id", sa.Integer(), nullable=False),
        sa.Column("soch_planned", sa.Boolean(), nullable=False),
        sa.Column("sor_count", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "sor_count >= 0 AND sor_count <= 20", name=op.f("ck_assessment_plans_sor_count")
        ),
        sa.ForeignKeyConstraint(
            ["class_group_id"],
            ["class_groups.id"],
            name=op.f("fk_assessment_plans_class_group_id_class_groups"),
        ),
        sa.ForeignKeyConstraint(
            ["subject_id"], ["subjects.id"], name=op.f("fk_assessment_plans_subject_id_subjects")
        ),
        sa.ForeignKeyConstraint(
            ["term_id"], ["terms.id"], name=op.f("fk_assessment_plans_term_id_terms")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assessment_plans")),
        sa.UniqueConstraint(
            "class_group_id",
            "subject_id",
            "term_id",
            name=op.f("uq_assessment_plans_class_group_id_subject_id_term_id"),
        ),
    )


def downgrade():
    op.drop_table("assessment_plans")
    with op.batch_alter_table("subjects") as batch_op:
        batch_op.drop_column("pass_fail")
    with op.batch_alter_table("class_groups") as batch_op:
        batch_op.drop_column("language")
    with op.batch_alter_table("school_years") as batch_op:
        batch_op.drop_column("closed_at")
    with op.batch_alter_table("schools") as batch_op:
        batch_op.drop_column("time_zone")
