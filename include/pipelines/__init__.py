"""The library the DAGs call: workload config, SageMaker request builders, packaging, naming, evaluation.

Modules import nothing heavy at top level; `config` is safe to use at DAG parse time.
"""
