"""What one endpoint deployment asks for: plain data the hosting API hands to the fleet."""
from __future__ import annotations

from dataclasses import dataclass, field

# SageMaker's default for ContainerStartupHealthCheckTimeoutInSeconds on framework images
DEFAULT_STARTUP_TIMEOUT_S = 600


@dataclass(frozen=True)
class ContainerSpec:
    """One ContainerDefinition of a SageMaker model, as CreateModel received it."""

    image: str
    model_data_url: str | None = None
    model_data_source: dict | None = None  # ModelDataSource.S3DataSource-style dict
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VariantSpec:
    """One production variant: which model, how many instances, how much traffic."""

    name: str
    model_name: str
    container: ContainerSpec
    instance_count: int = 1
    instance_type: str | None = None
    serverless_config: dict | None = None
    weight: float = 1.0
    startup_timeout_s: int = DEFAULT_STARTUP_TIMEOUT_S
    problem: str | None = None  # why this variant cannot run locally (fails the deployment)

    @property
    def is_serverless(self) -> bool:
        return self.serverless_config is not None
