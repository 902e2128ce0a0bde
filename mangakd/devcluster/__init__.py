"""In-memory Kubernetes API server and local executor for tests and local trials.

A development sandbox, not Kubernetes: it serves the API over plain HTTP on
127.0.0.1 so that kopf, the official ``kubernetes`` client and ``kubectl``
use it as a cluster, and runs Job pods as local processes. See
:mod:`mangakd.devcluster.cluster` for what it leaves out.
"""

from .cluster import DevCluster, run_dev_cluster, serve_dev_cluster

__all__ = ["DevCluster", "run_dev_cluster", "serve_dev_cluster"]
