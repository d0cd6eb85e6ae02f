"""SageMaker semantics, one module per resource. Importing this package registers every operation."""
# each resource module registers its operations with the registry when imported
from . import (  # noqa: F401
    hosting,
    processing,
    registry,
    registry_models,
    tags,
    training,
    transform,
    tuning,
)
