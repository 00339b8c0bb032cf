"""`buildtool submit`: publish the verified pipeline.yaml to Kubeflow Pipelines (v1) as a version, and run it.

plan.py decides names, parameters and what to create (no network); kfp_api.py is the only module that talks
to the KFP API (through kfp.Client); execute.py carries a decision out and follows a run.
"""
