"""Views over the store for people and scripts: the status document and its
`--once` renderings (text, JSON, Prometheus), batch detail, exports and the event log.

Pure readers: no writes, no Textual, no SDK.
"""
