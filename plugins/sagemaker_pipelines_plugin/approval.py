"""A person approves a model version in the Airflow UI, and the answer is written to the model registry.

Airflow 3's ApprovalOperator asks (Approve / Reject, with a timeout whose default is Reject); this
subclass writes the answer back to the version's ModelApprovalStatus and ApprovalDescription, in
the same task, so the registry records a rejection too (a rejection skips the tasks downstream,
which could not record it).
"""
from __future__ import annotations

from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook
from airflow.providers.standard.operators.hitl import ApprovalOperator

from sagemaker_pipelines_plugin.links import SageMakerApprovalLink


class SageMakerModelApprovalOperator(ApprovalOperator):
    """ApprovalOperator for one model package version; Approve/Reject becomes its approval status."""

    template_fields = (*ApprovalOperator.template_fields, "model_package_arn")
    operator_extra_links = (SageMakerApprovalLink(),)

    def __init__(self, *, model_package_arn: str, aws_conn_id: str | None = "aws_default", **kwargs):
        kwargs.setdefault("defaults", self.REJECT)  # no answer before the timeout rejects
        super().__init__(**kwargs)
        self.model_package_arn = model_package_arn
        self.aws_conn_id = aws_conn_id

    def execute_complete(self, context, event: dict):
        chosen = (event.get("chosen_options") or [self.REJECT])[0]
        who = event.get("responded_by_user") or {}
        name = who.get("name") or who.get("id") if isinstance(who, dict) else who
        approved = chosen == self.APPROVE
        ti = context["ti"]
        description = (f"{chosen} by {name or 'the approval timeout'} in Airflow "
                       f"({ti.dag_id}, run {ti.run_id})")
        SageMakerHook(aws_conn_id=self.aws_conn_id).conn.update_model_package(
            ModelPackageArn=self.model_package_arn, ModelApprovalStatus="Approved" if approved else "Rejected",
            ApprovalDescription=description[:1024])
        self.log.info("Model package %s: %s", self.model_package_arn, description)
        return super().execute_complete(context, event)
