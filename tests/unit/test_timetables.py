"""UpcomingCronTimetable: unpausing a scheduled pipeline waits for the next cron time, never runs a past one."""
from __future__ import annotations

import datetime

import pendulum
import pytest
from airflow.timetables.base import DataInterval, TimeRestriction
from airflow.timetables.trigger import CronTriggerTimetable

from include.pipelines.tasks import START_DATE, dag_schedule
from sagemaker_pipelines_plugin import timetables
from sagemaker_pipelines_plugin.timetables import UpcomingCronTimetable

WEDNESDAY = pendulum.datetime(2026, 3, 18, 12, tz="UTC")
LAST_SUNDAY = pendulum.datetime(2026, 3, 15, tz="UTC")
NEXT_SUNDAY = pendulum.datetime(2026, 3, 22, tz="UTC")
NO_CATCHUP = TimeRestriction(earliest=START_DATE, latest=None, catchup=False)


@pytest.fixture
def now(monkeypatch):
    """Set the clock the timetables read (each module imports utcnow by name)."""
    import airflow.timetables.trigger as airflow_trigger

    def set_now(moment):
        for module in (timetables, airflow_trigger):
            monkeypatch.setattr(module, "utcnow", lambda: moment)

    return set_now


def _interval_ending(moment) -> DataInterval:
    return DataInterval(moment, moment)


def test_first_run_of_a_new_or_unpaused_dag_is_the_next_slot(now):
    now(WEDNESDAY)
    info = UpcomingCronTimetable("@weekly", timezone="UTC").next_dagrun_info(
        last_automated_data_interval=None, restriction=NO_CATCHUP
    )
    assert info.run_after == NEXT_SUNDAY
    assert info.data_interval == DataInterval(NEXT_SUNDAY, NEXT_SUNDAY)


def test_airflows_own_cron_timetable_runs_the_past_slot_at_once(now):
    """Why the project has its own: without catchup, CronTriggerTimetable still starts last Sunday's run."""
    now(WEDNESDAY)
    info = CronTriggerTimetable("@weekly", timezone="UTC").next_dagrun_info(
        last_automated_data_interval=None, restriction=NO_CATCHUP
    )
    assert info.run_after == LAST_SUNDAY


def test_a_dag_paused_across_slots_resumes_at_the_next_slot(now):
    now(WEDNESDAY)
    paused_after = pendulum.datetime(2026, 2, 1, tz="UTC")
    info = UpcomingCronTimetable("0 0 * * 0", timezone="UTC").next_dagrun_info(
        last_automated_data_interval=_interval_ending(paused_after), restriction=NO_CATCHUP
    )
    assert info.run_after == NEXT_SUNDAY


def test_a_slot_that_just_came_is_still_run(now):
    """The scheduler creates a run moments after its time; a re-parse in between must not skip it."""
    now(LAST_SUNDAY + datetime.timedelta(minutes=1))
    info = UpcomingCronTimetable("@weekly", timezone="UTC").next_dagrun_info(
        last_automated_data_interval=_interval_ending(LAST_SUNDAY - datetime.timedelta(weeks=1)), restriction=NO_CATCHUP
    )
    assert info.run_after == LAST_SUNDAY


def test_a_slot_missed_by_more_than_the_grace_is_skipped(now):
    now(LAST_SUNDAY + timetables.DEFAULT_GRACE + datetime.timedelta(seconds=1))
    info = UpcomingCronTimetable("@weekly", timezone="UTC").next_dagrun_info(
        last_automated_data_interval=_interval_ending(LAST_SUNDAY - datetime.timedelta(weeks=1)), restriction=NO_CATCHUP
    )
    assert info.run_after == NEXT_SUNDAY


def test_after_a_scheduled_run_the_next_follows_the_cron(now):
    now(LAST_SUNDAY + datetime.timedelta(seconds=5))
    info = UpcomingCronTimetable("@weekly", timezone="UTC").next_dagrun_info(
        last_automated_data_interval=_interval_ending(LAST_SUNDAY), restriction=NO_CATCHUP
    )
    assert info.run_after == NEXT_SUNDAY


def test_with_catchup_it_behaves_as_cron_trigger_timetable(now):
    now(WEDNESDAY)
    restriction = TimeRestriction(earliest=START_DATE, latest=None, catchup=True)
    ours = UpcomingCronTimetable("@weekly", timezone="UTC").next_dagrun_info(
        last_automated_data_interval=None, restriction=restriction
    )
    airflows = CronTriggerTimetable("@weekly", timezone="UTC").next_dagrun_info(
        last_automated_data_interval=None, restriction=restriction
    )
    assert ours == airflows


def test_end_date_before_the_next_slot_means_no_run(now):
    now(WEDNESDAY)
    restriction = TimeRestriction(earliest=START_DATE, latest=WEDNESDAY + datetime.timedelta(days=1), catchup=False)
    assert UpcomingCronTimetable("@weekly", timezone="UTC").next_dagrun_info(
        last_automated_data_interval=None, restriction=restriction
    ) is None


def test_serialization_keeps_expression_timezone_and_grace():
    timetable = UpcomingCronTimetable("30 2 * * 1", timezone="Europe/Berlin", grace=datetime.timedelta(minutes=2))
    copy = UpcomingCronTimetable.deserialize(timetable.serialize())
    assert type(copy) is UpcomingCronTimetable
    assert copy.serialize() == timetable.serialize()
    assert copy.summary == "30 2 * * 1"


@pytest.mark.parametrize(("schedule", "expected"), [(None, None), ("@once", "@once"), ("@continuous", "@continuous")])
def test_manual_once_and_continuous_schedules_pass_through(schedule, expected):
    assert dag_schedule(schedule) == expected


@pytest.mark.parametrize(("schedule", "cron"), [("@weekly", "0 0 * * 0"), ("@daily", "0 0 * * *"), ("15 3 * * 1-5", "15 3 * * 1-5")])
def test_presets_and_cron_expressions_become_upcoming_cron_timetables(schedule, cron):
    timetable = dag_schedule(schedule)
    assert isinstance(timetable, UpcomingCronTimetable)
    assert timetable.summary == cron
