"""mangakd: a distillation pipeline and Kubernetes operator for intent classifiers."""

__version__ = "0.1.0"
