"""Ordinary kfp 1.8 pipelines, written as their users write them, that `buildtool run` must run as kfp runs them.

Each module has `make_pipeline(base_image)`, the pipeline function with its components built on
`base_image`; `ARGUMENTS`, the pipeline's arguments; `expected(arguments)`, each (task, output)'s file as
the component functions themselves compute it; and `LOCAL_CLIENT`, the outputs kfp's own `LocalClient`
(docker mode) produces, to compare with `buildtool run`'s (its comments say what LocalClient cannot run).
"""
