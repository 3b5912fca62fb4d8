"""The HTTP face of nbjobs: the ArcGIS portal subset, the notebook administrator API and HTML pages."""
