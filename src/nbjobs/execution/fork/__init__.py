"""Kernels forked from a pre-imported template process (issue 15): not yet wired into the job path."""
