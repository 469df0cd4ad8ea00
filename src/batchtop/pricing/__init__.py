"""Prices, savings, estimates and budgets: headless (no Textual, no SDK).

Import the submodules directly (`batchtop.pricing.savings`, ...): this package's
`__init__` stays empty so that `batchtop.config` can import `pricing.table` to
validate `[prices]` without an import cycle.
"""
