# The operator image: the kopf operator that reconciles mangakd's resources.
# Build from the repository root:
#   docker build -f images/operator.Dockerfile -t mangakd/operator:0.1.0 .
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1

# The operator never trains; the CPU build of torch only satisfies the dependency.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md /src/
COPY mangakd /src/mangakd
COPY operator /src/operator
RUN pip install /src

RUN useradd --uid 1000 --gid 0 --create-home mangakd
USER 1000
EXPOSE 8000
ENTRYPOINT ["python", "-m", "mangakd_operator"]
