"""Running notebooks: parameter injection, notebook I/O and execution."""
