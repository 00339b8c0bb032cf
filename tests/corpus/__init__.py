"""Ordinary kfp 1.8 pipelines, written as their users write them, that `buildtool run` must run as kfp runs them.

Each module has `make_pipeline(base_image)`, returning the pipeline function with its components built on
`base_image`; `ARGUMENTS`, the pipeline's arguments; and `OUTPUTS`, the (task, output) pairs whose values
the tests compare.
"""
