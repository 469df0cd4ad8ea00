"""Intake: validate native batch lines and store them in buffers.

The CLI's `enqueue` (`files`), the Python `Client` and `quote` share one validator
(`validation`), so a line accepted by one is accepted by all.
"""
