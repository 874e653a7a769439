"""Storage engines: one interface (``base.Engine``), several engines, one contract suite."""
