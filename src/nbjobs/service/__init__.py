"""Use cases: what users and the server's own loops can do with jobs. Authorization is decided here."""
