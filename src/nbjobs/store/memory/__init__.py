"""In-memory stores, one per SQL store in store/, each held to the same contract suite."""
