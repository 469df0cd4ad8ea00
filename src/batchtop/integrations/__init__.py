"""Integrations that push what the store records to other systems (webhooks)."""
