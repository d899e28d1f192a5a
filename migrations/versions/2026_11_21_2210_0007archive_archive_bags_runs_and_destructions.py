"""archive bags, runs and destructions

Revision ID: 0007archive
Revises: 0003user_prefs
Create Date: 2026-11-21 22:10:00
"""

import sqlalchemy as sa
from alembic import op

import journal.db  # noqa: F401  (custom column types)

revision = "0007archive"
down_revision = "0003user_prefs"
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# bag_destructions is history: the same guard as migration 0002history_guard.
PG_FUNCTION = """
CREATE OR REPLACE FUNCTION refuse_history_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$
"""


def guard(table):
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse_history_rewrite()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION refuse_history_rewrite()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
            )


def unguard(table):
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    else:
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{action}")


def upgrade():
    op.create_table(
        "archive_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("started_at", journal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", journal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("bags_done", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('archive', 'expire')", name=op.f("ck_archive_runs_kind")),
        sa.CheckConstraint(
            "status IN ('running', 'done', 'failed')", name=op.f("ck_archive_runs_status")
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["schools.id"], name=op.f("fk_archive_runs_school_id_schools")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_runs")),
    )
    with op.batch_alter_table("archive_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_archive_runs_school_id"), ["school_id"], unique=False)

    op.create_table(
        "archived_bags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("school_year_id", sa.Integer(), nullable=False),
        sa.Column("class_group_id", sa.Integer(), nullable=True),
        sa.Column("term_id", sa.Integer(), nullable=True),
        sa.Column("log_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("tier", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("checkpoint_size", BIG, nullable=False),
        sa.Column("checkpoint_root", sa.LargeBinary(length=32), nullable=False),
        sa.Column("bagging_date", sa.Date(), nullable=False),
        sa.Column("retain_until", sa.Date(), nullable=False),
        sa.Column("storage", sa.String(length=300), nullable=False),
        sa.Column("sha512", sa.String(length=128), nullable=True),
        sa.Column("size", BIG, nullable=True),
        sa.Column("planned_at", journal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sealed_at", journal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("destroyed_at", journal.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ledger_seq", BIG, nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('journal_quarter', 'journal_year', 'ledger_year')",
            name=op.f("ck_archived_bags_kind"),
        ),
        sa.CheckConstraint(
            "state IN ('planned', 'built', 'sealed', 'destroyed')",
            name=op.f("ck_archived_bags_state"),
        ),
        sa.CheckConstraint(
            "tier IN ('journal-5y', 'ledger-25y')", name=op.f("ck_archived_bags_tier")
        ),
        sa.ForeignKeyConstraint(
            ["class_group_id"],
            ["class_groups.id"],
            name=op.f("fk_archived_bags_class_group_id_class_groups"),
        ),
        sa.ForeignKeyConstraint(["log_id"], ["logs.id"], name=op.f("fk_archived_bags_log_id_logs")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["archive_runs.id"], name=op.f("fk_archived_bags_run_id_archive_runs")
        ),
        sa.ForeignKeyConstraint(
            ["school_id"], ["schools.id"], name=op.f("fk_archived_bags_school_id_schools")
        ),
        sa.ForeignKeyConstraint(
            ["school_year_id"],
            ["school_years.id"],
            name=op.f("fk_archived_bags_school_year_id_school_years"),
        ),
        sa.ForeignKeyConstraint(
            ["term_id"], ["terms.id"], name=op.f("fk_archived_bags_term_id_terms")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archived_bags")),
        sa.UniqueConstraint("key", name=op.f("uq_archived_bags_key")),
    )
    with op.batch_alter_table("archived_bags", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_archived_bags_school_id"), ["school_id"], unique=False
        )

    op.create_table(
        "bag_destructions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bag_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("sha512", sa.String(length=128), nullable=False),
        sa.Column("retain_until", sa.Date(), nullable=False),
        sa.Column("destroyed_on", sa.Date(), nullable=False),
        sa.Column("destroyed_at", journal.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("object_found", sa.Boolean(), nullable=False),
        sa.Column("ledger_seq", BIG, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["bag_id"], ["archived_bags.id"], name=op.f("fk_bag_destructions_bag_id_archived_bags")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["archive_runs.id"], name=op.f("fk_bag_destructions_run_id_archive_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bag_destructions")),
        sa.UniqueConstraint("bag_id", name=op.f("uq_bag_destructions_bag_id")),
    )
    guard("bag_destructions")


def downgrade():
    unguard("bag_destructions")
    op.drop_table("bag_destructions")
    with op.batch_alter_table("archived_bags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_archived_bags_school_id"))
    op.drop_table("archived_bags")
    with op.batch_alter_table("archive_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_archive_runs_school_id"))
    op.drop_table("archive_runs")
