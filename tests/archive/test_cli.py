"""``flask archive run`` and ``flask archive expire`` as an operator runs them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from archive.models import ArchivedBag, BagDestruction
from tests.archive.school import PastSchool, build_past_school


@pytest.fixture
def cli(app: Any, session: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setitem(app.config, "ARCHIVE_LOCAL_ROOT", str(tmp_path / "store"))
    monkeypatch.setitem(app.config, "ARCHIVE_STAGING_DIR", str(tmp_path / "staging"))
    runner = app.test_cli_runner()

    def invoke(*args: str) -> Any:
        return runner.invoke(args=list(args))

    return invoke


@pytest.fixture
def past(session: Any, app: Any) -> PastSchool:
    return build_past_school(session, app.config["KEYS_DIR"])


def test_archive_run_seals_and_a_second_run_has_nothing_to_do(
    cli: Any, past: PastSchool, tmp_path: Path
) -> None:
    first = cli("archive", "run")
    assert first.exit_code == 0, first.output
    assert f"{past.school.domain}: 11 bag(s) sealed" in first.output
    assert (
        f"sealed {past.school.domain}/ledger-2024-2025.tar (the store confirmed its size, "
        "checksums and retention)" in first.output
    )
    assert f"{past.school.domain} journal bags" in first.output  # the progress bar's label
    assert len(list((tmp_path / "store" / "objects" / past.school.domain).iterdir())) == 11
    second = cli("archive", "run")
    assert second.exit_code == 0 and f"{past.school.domain}: 0 bag(s) sealed" in second.output


def test_archive_run_with_the_full_read_back(cli: Any, past: PastSchool) -> None:
    result = cli("archive", "run", "--full-readback")
    assert result.exit_code == 0, result.output
    assert result.output.count("(read back and verified completely)") == 11


def test_archive_run_for_one_school_only(cli: Any, session: Any, app: Any) -> None:
    one = build_past_school(session, app.config["KEYS_DIR"], classes=1)
    other = build_past_school(session, app.config["KEYS_DIR"], classes=1)
    result = cli("archive", "run", "--school", one.school.domain)
    assert result.exit_code == 0, result.output
    schools = set(session.scalars(sa.select(ArchivedBag.school_id)))
    assert schools == {one.school.id} and other.school.domain not in result.output


def test_archive_expire_four_and_six_years_on(
    cli: Any, session: Any, past: PastSchool, tmp_path: Path
) -> None:
    assert cli("archive", "run").exit_code == 0
    kept = cli("archive", "expire", "--today", "2029-06-01")
    assert kept.exit_code == 0, kept.output
    assert "0 bag(s) destroyed as of 2029-06-01, 11 kept under retention" in kept.output
    gone = cli("archive", "expire", "--today", "2031-06-01")
    assert gone.exit_code == 0, gone.output
    assert "10 bag(s) destroyed as of 2031-06-01, 1 kept under retention" in gone.output
    assert gone.output.count("(recorded in the ledger log)") == 10
    left = [p.name for p in (tmp_path / "store" / "objects" / past.school.domain).iterdir()]
    assert left == ["ledger-2024-2025.tar"]
    assert session.scalar(sa.select(sa.func.count()).select_from(BagDestruction)) == 10


def test_expire_refuses_a_day_in_the_future_outside_tests(
    cli: Any, app: Any, past: PastSchool, monkeypatch: pytest.MonkeyPatch, session: Any
) -> None:
    assert cli("archive", "run").exit_code == 0
    monkeypatch.setitem(app.config, "TESTING", False)
    later = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
    result = cli("archive", "expire", "--today", later)
    assert result.exit_code == 2 and "later than today" in result.output
    assert session.scalar(sa.select(sa.func.count()).select_from(BagDestruction)) == 0


def test_expire_needs_a_real_date(cli: Any) -> None:
    result = cli("archive", "expire", "--today", "2031-13-01")
    assert result.exit_code == 2 and "--today" in result.output


def test_a_bad_storage_setting_is_a_clear_error(
    cli: Any, app: Any, past: PastSchool, monkeypatch: pytest.MonkeyPatch, session: Any
) -> None:
    monkeypatch.setitem(app.config, "ARCHIVE_STORAGE", "ftp")
    result = cli("archive", "run")
    assert result.exit_code == 1
    assert "archive configuration: ARCHIVE_STORAGE must be 'local' or 's3'" in result.output
    assert session.scalar(sa.select(sa.func.count()).select_from(ArchivedBag)) == 0


def test_a_failing_school_fails_the_command(
    cli: Any, app: Any, past: PastSchool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(app.config, "KEYS_DIR", str(tmp_path / "no-keys"))
    result = cli("archive", "run")
    assert result.exit_code == 1
    assert f"{past.school.domain}: FAILED: no log key" in result.output


def test_one_class_failing_is_reported_the_rest_is_sealed_and_the_exit_code_says_so(
    cli: Any, session: Any, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import exports.printouts

    past = build_past_school(session, app.config["KEYS_DIR"], classes=2)
    broken = past.classes[0]
    real = exports.printouts.printouts_for

    def printouts_for(session: Any, class_group: Any, term: Any) -> dict[str, bytes]:
        if class_group.id == broken.id:
            raise RuntimeError("the renderer ran out of paper")
        return real(session, class_group, term)

    monkeypatch.setattr(exports.printouts, "printouts_for", printouts_for)
    result = cli("archive", "run")
    assert result.exit_code == 1, result.output
    assert f"{past.school.domain}: 5 bag(s) sealed" in result.output
    failed = [line for line in result.output.splitlines() if "FAILED" in line]
    assert len(failed) == 5 and all("ran out of paper" in line for line in failed)
    assert all(f"class{broken.id}-" in line for line in failed)
    assert "the rest of the school went on" in failed[0]
    states = dict(session.execute(sa.select(ArchivedBag.key, ArchivedBag.state)).all())
    assert sorted(states.values()).count("sealed") == 5
    monkeypatch.setattr(exports.printouts, "printouts_for", real)
    again = cli("archive", "run")  # the next night: the failed class, then the ledger bag
    assert again.exit_code == 0 and f"{past.school.domain}: 6 bag(s) sealed" in again.output
