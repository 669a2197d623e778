"""hepad: unsupervised anomaly detection runs for particle physics, composed by Hydra."""

__version__ = "0.1.0"
