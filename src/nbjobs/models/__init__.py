"""The domain records and enums, and the store Protocols (stores.py).

This package imports nothing of nbjobs but itself and errors.
"""
