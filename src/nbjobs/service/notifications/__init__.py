"""Notifications of job events: rules, the outbox scan and sender, the email and webhook channels."""
