"""intelliflow: task-oriented semantic communication for image captioning."""

__version__ = "0.1.0"
