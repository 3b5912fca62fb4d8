"""The web app for people at ``/<context>/app``: server-rendered pages (Jinja2) with a little plain
JavaScript served from ``static/``; the ArcGIS directory pages under ``/admin`` stay beside it."""
