# The local SageMaker: the emulator and the execution environment of the jobs and model servers it
# runs (torch, transformers, ultralytics, AWS's container toolkits, moto), from requirements-local.txt.
# Built by docker-compose.yaml; outside Docker, `make emulator` runs the same server.
FROM python:3.11-slim

# build-essential: sagemaker-training is an sdist with a C extension; libgl1 and libglib2.0-0:
# OpenCV (pulled in by ultralytics) loads them at import.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/project
COPY requirements.txt requirements-local.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements-local.txt -c constraints.txt && pip check
# the Hugging Face inference image's toolkit, without its numpy<2 speech dependencies, beside
# site-packages where include/emulator/serving/huggingface.py finds it (sys.prefix/hf-inference-toolkit)
COPY requirements-hf-inference.txt ./
RUN pip install --no-cache-dir --no-deps --target /usr/local/hf-inference-toolkit -r requirements-hf-inference.txt

# jobs and model servers run as an unprivileged user; its state lives in a volume at .emulator/
RUN useradd --create-home --uid 1000 emulator && mkdir .emulator && chown emulator .emulator
COPY include/ include/
USER emulator
EXPOSE 4566
