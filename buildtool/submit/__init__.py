"""`buildtool submit`: publish the verified pipeline.yaml to Kubeflow Pipelines (v1) as a version, and run it.

plan.py decides names, parameters and what to create (no network); kfp_api.py is the only module that talks
to the KFP API (through kfp.Client), kfp_answers.py reads its answers and words its errors, kfp_data.py holds
what it hands out; execute.py carries a decision out and follows a run.
"""
