"""
### meld_sentiment_rollback: put an earlier Approved version back on the standing endpoint

An Airflow DAG triggered by hand: `version` in the trigger form (empty: the newest Approved version
older than the one serving) goes back on the endpoint with the same guarded update a promotion uses,
then the smoke test runs against it. See docs/promotion.md.
"""
from include.pipelines.config import load_workload
from include.pipelines.rollback import rollback_dag

rollback_dag(load_workload("meld_sentiment"), doc=__doc__, fileloc=__file__)
