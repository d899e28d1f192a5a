"""entries' references checked once per batch on PostgreSQL, not once per entry

The four foreign keys of entries (log, author, lesson, student) cost PostgreSQL a trigger and a
row lock per key per inserted entry: 14 of the 24 microseconds its COPY of an entry took. On
PostgreSQL they become what they guarded, done once per batch and per row named:

- the writer checks every reference before writing (the recorder refuses an unknown journal,
  lesson or student, and an author who does not own the signing key), and holds the rows named
  under the same lock a foreign key takes (FOR KEY SHARE, one statement per batch; the journal's
  row under its write lock), so nobody deletes them before it commits;
- each referenced table refuses to delete (or renumber) a row entries name, and TRUNCATE while
  entries name any: the same SQLSTATE (23503) the foreign key raised.

SQLite keeps its foreign keys (dropping one there rebuilds the table), and the models keep
them too: migrations/env.py leaves these four out of PostgreSQL's autogenerate comparison.

Revision ID: 0019refs
Revises: 0018seqsum
Create Date: 2026-12-07 12:30:00
"""

from alembic import op

revision = "0019refs"
down_revision = "0018seqsum"
branch_labels = None
depends_on = None

# (constraint, column of entries, referenced table): the names the naming convention gave.
REFERENCES = (
    ("fk_entries_log_id_logs", "log_id", "logs"),
    ("fk_entries_author_id_users", "author_id", "users"),
    ("fk_entries_lesson_id_lessons", "lesson_id", "lessons"),
    ("fk_entries_student_id_students", "student_id", "students"),
)

FUNCTION = """
CREATE OR REPLACE FUNCTION keep_entries_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    named boolean;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM entries WHERE %I IS NOT NULL)', TG_ARGV[0])
            INTO named;
        IF named THEN
            RAISE EXCEPTION 'entries name %: TRUNCATE refused', TG_TABLE_NAME
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
        RETURN NEW;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM entries WHERE %I = $1)', TG_ARGV[0])
        INTO named USING OLD.id;
    IF named THEN
        RAISE EXCEPTION 'entries name % %: % refused', TG_TABLE_NAME, OLD.id, TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        RETURN NEW;
    END IF;
    RETURN OLD;
END
$$
"""


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(FUNCTION)
    for constraint, column, table in REFERENCES:
        op.execute(f"ALTER TABLE entries DROP CONSTRAINT {constraint}")
        op.execute(
            f"CREATE TRIGGER {table}_named_by_entries BEFORE DELETE OR UPDATE OF id ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION keep_entries_references('{column}')"
        )
        op.execute(
            f"CREATE TRIGGER {table}_truncate_named_by_entries BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION keep_entries_references('{column}')"
        )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    for constraint, column, table in REFERENCES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_named_by_entries ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_truncate_named_by_entries ON {table}")
        op.execute(
            f"ALTER TABLE entries ADD CONSTRAINT {constraint} "
            f"FOREIGN KEY ({column}) REFERENCES {table} (id)"
        )
    op.execute("DROP FUNCTION IF EXISTS keep_entries_references()")
