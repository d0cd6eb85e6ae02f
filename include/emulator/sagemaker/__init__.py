"""SageMaker semantics: records and operations, one module per resource (the runners that make jobs
really run are ``include.emulator.jobs`` and ``include.emulator.tuning``). Importing this package
registers every operation."""
# each resource module registers its operations in the operation table when imported
from . import (  # noqa: F401
    hosting,
    model_registry,
    processing,
    tags,
    training,
    transform,
    tuning,
)
