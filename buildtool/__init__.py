"""buildtool: build, push and digest-pin a Kubeflow Pipelines v1 training pipeline's images, then compile it."""
