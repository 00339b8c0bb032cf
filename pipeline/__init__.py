"""The training pipeline: three steps (download, train, upload) compiled for Kubeflow Pipelines v1."""
