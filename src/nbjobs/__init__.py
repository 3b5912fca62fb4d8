"""nbjobs: run Jupyter notebooks as jobs behind the ArcGIS Notebook Server administrator API."""

__version__ = "0.1.0"
