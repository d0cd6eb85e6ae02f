"""SageMaker semantics, one module per resource. Importing this package registers every operation."""
from . import registry  # noqa: F401
from . import tags  # noqa: F401

# resource modules register themselves on import; a missing one just leaves its operations unknown
for _name in ("training", "hosting", "transform", "processing", "registry_models", "tuning"):
    try:
        __import__(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # pragma: no cover - only while a module is being written
        if exc.name != f"{__name__}.{_name}":
            raise
