"""Local stand-ins for SageMaker hosting instances.

``model_server`` is the process one variant instance runs (``/ping``, ``/invocations`` handed to its
SAGEMAKER_MODEL_SERVER_WORKERS worker processes, which run the sagemaker-inference handler contract
from ``handlers``, or on Hugging Face images the sagemaker-huggingface-inference-toolkit's handler
service from ``huggingface``); ``fleet`` starts, routes to and stops those processes for endpoints;
``artifacts`` lays out a model directory the way the container's ``/opt/ml/model`` looks.
"""
