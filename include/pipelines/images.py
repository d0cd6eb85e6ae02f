"""Framework container images from the SageMaker SDK's offline table (sagemaker.core.image_uris).

No account ids are hard-coded: the SDK knows which registry serves which region. The lookup reads
JSON files shipped with sagemaker-core, so it works offline; the import is slow (seconds), which is
why it happens here, inside a task, and never in a DAG file.
"""
from __future__ import annotations

from .config import WorkloadConfig


def _retrieve(cfg: WorkloadConfig, region: str, instance_type: str | None, scope: str, serverless: bool = False) -> str:
    from sagemaker.core import image_uris

    kwargs = dict(
        framework=cfg.image.framework,
        region=region,
        version=cfg.image.version,
        py_version=cfg.image.py_version,
        instance_type=instance_type,
        image_scope=scope,
    )
    if cfg.image.base_framework_version:
        kwargs["base_framework_version"] = cfg.image.base_framework_version
    if serverless:
        from sagemaker.core.serverless_inference_config import ServerlessInferenceConfig

        kwargs["serverless_inference_config"] = ServerlessInferenceConfig()
    try:
        return image_uris.retrieve(**kwargs)
    except ValueError as exc:
        raise ValueError(
            f"workload {cfg.name!r}: no {scope} image for {cfg.image.framework} {cfg.image.version} "
            f"{cfg.image.py_version} on {instance_type or 'serverless'} in {region}: {exc}"
        ) from exc


def training_image_uri(cfg: WorkloadConfig, region: str) -> str:
    """The training image for the workload's framework, version and training instance type."""
    return _retrieve(cfg, region, cfg.training.instance_type, "training")


def inference_image_uri(cfg: WorkloadConfig, region: str, *, instance_type: str | None = None) -> str:
    """The inference image for the endpoint's instance type (or `instance_type`, e.g. a transform's)."""
    if instance_type is None and cfg.endpoint is not None and cfg.endpoint.serverless is not None:
        return _retrieve(cfg, region, None, "inference", serverless=True)
    instance_type = instance_type or (cfg.endpoint.instance_type if cfg.endpoint else None) \
        or (cfg.transform.instance_type if cfg.transform else None)
    if instance_type is None:
        raise ValueError(f"workload {cfg.name!r} has neither an endpoint nor a transform to pick an inference image for")
    return _retrieve(cfg, region, instance_type, "inference")
