"""The cost report over a period: `batchtop report` and the console's savings screen.

`document` builds the one report document (the `report --json` schema of shared/cli.md)
from the rollups; `render` turns it into text or CSV. Headless: no Textual, no SDK.
"""
