"""A cron schedule whose first run after unpausing is the next cron time, never one already past.

With catchup=False, Airflow's own cron timetables (CronTriggerTimetable included) still schedule the
most recent past slot: a weekly DAG deployed or unpaused on a Wednesday starts last Sunday's run at
once, here a full tuned retraining. Registered through the plugin (plugins/sagemaker_pipelines.py),
as Airflow requires of a custom timetable so the scheduler can deserialize it.
"""
from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk.timezone import coerce_datetime, utcnow
from airflow.timetables.base import DagRunInfo
from airflow.timetables.trigger import CronTriggerTimetable

if TYPE_CHECKING:
    from pendulum import DateTime

    from airflow.timetables.base import DataInterval, TimeRestriction

# A slot this recent still counts as due: the scheduler creates a run moments after its time, and a
# re-parse of the DAG file in between must not move the next run a whole period on
DEFAULT_GRACE = datetime.timedelta(minutes=5)


class UpcomingCronTimetable(CronTriggerTimetable):
    """CronTriggerTimetable that, without catchup, schedules only cron times from now on.

    The first run after the DAG is deployed or unpaused is the next cron time (or one that came less
    than `grace` ago); later runs follow the cron expression as usual. A slot missed by more than
    `grace` (the DAG paused, the scheduler down) is skipped, as cron itself would. With catchup=True
    it behaves exactly as CronTriggerTimetable.
    """

    def __init__(
        self,
        cron: str,
        *,
        timezone: Any,
        interval: datetime.timedelta = datetime.timedelta(),
        grace: datetime.timedelta = DEFAULT_GRACE,
    ) -> None:
        super().__init__(cron, timezone=timezone, interval=interval, run_immediately=False)
        self._grace = grace

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> UpcomingCronTimetable:
        base = CronTriggerTimetable.deserialize(data)
        return cls(base._expression, timezone=base._timezone, interval=base._interval,
                   grace=datetime.timedelta(seconds=data.get("grace_seconds", DEFAULT_GRACE.total_seconds())))

    def serialize(self) -> dict[str, Any]:
        return {**super().serialize(), "grace_seconds": self._grace.total_seconds()}

    def next_dagrun_info(
        self,
        *,
        last_automated_data_interval: DataInterval | None,
        restriction: TimeRestriction,
    ) -> DagRunInfo | None:
        if restriction.catchup:
            return super().next_dagrun_info(
                last_automated_data_interval=last_automated_data_interval, restriction=restriction
            )
        # as CronTriggerTimetable, less its candidate "the latest slot at or before now"
        candidates = [self._upcoming(coerce_datetime(utcnow()))]
        if last_automated_data_interval is not None:
            candidates.append(self._get_next(last_automated_data_interval.end))
        if restriction.earliest is not None:
            candidates.append(self._align_to_next(restriction.earliest))
        run_after = max(candidates)
        if restriction.latest is not None and restriction.latest < run_after:
            return None
        return DagRunInfo.interval(coerce_datetime(run_after - self._interval), run_after)

    def _upcoming(self, now: DateTime) -> DateTime:
        """The cron time at or after now, or the one just before it when that is within the grace."""
        previous = self._align_to_prev(now)
        return previous if now - previous <= self._grace else self._align_to_next(now)
