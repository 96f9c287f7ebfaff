"""The DAG factory's phases: one builder per phase, each returning the tasks it created.

`dag_factory.build_dag` calls them in runbook order and wires the edges between phases:
`preflight` (run checks, source changes, source preparation), `load` (initial load, target
preparation), `cdc` (start and wait in sync), `cutover` and `cleanup`. `plan` holds the
per-database plan and the kwargs mapper of every mapped task and group; `task_ids` the ids that
one task refers to from another.
"""
