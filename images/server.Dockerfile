# The inference server image: `mangakd serve` on onnxruntime, CPU only.
# StudentModel Deployments run it. Build from the repository root:
#   docker build -f images/server.Dockerfile -t mangakd/server:0.1.0 .
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1

# The mangakd package depends on torch; the CPU build keeps the image small.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md /src/
COPY mangakd /src/mangakd
COPY operator /src/operator
RUN pip install /src

RUN useradd --uid 1000 --gid 0 --create-home mangakd
USER 1000
EXPOSE 8080
ENTRYPOINT ["mangakd", "serve"]
