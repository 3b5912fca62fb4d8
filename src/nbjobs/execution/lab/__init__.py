"""Interactive notebooks' execution side: a user's Jupyter server (JupyterLab), started, watched, stopped
on the node that runs it (docs/interactive.md)."""
