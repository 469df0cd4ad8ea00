"""The engine: one pass (a tick) reconciles, cancels, polls, ingests and flushes.

It changes state only through the store and talks to providers only through the
provider contract, so it holds no SQL and never inspects an SDK exception.
"""
