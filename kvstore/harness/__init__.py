"""The Jepsen-style harness: run a real cluster under faults, record, check, report.

Structure as in Jepsen: a workload generator, client workers that record every
operation, nemeses that inject faults, a runner that owns the run folder, and checks
that hold each consistency setting to the promise DESIGN.md makes for it.
"""
