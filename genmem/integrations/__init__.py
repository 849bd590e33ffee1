"""genmem inside other frameworks' training loops (each integration needs its own optional extra)."""
