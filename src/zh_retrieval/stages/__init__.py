"""One module per dvc.yaml stage, named as the stage: read params once, call the library, write outputs.

A stage module imports only the library (core, data, retrieval, mining, training, reporting),
never another stage, so that editing one stage's command line re-runs that stage alone.
"""
