"""`python -m magerl.telemetry > docs/metrics.md`: the metric reference, from the catalogue."""

from magerl.telemetry.catalogue import render_markdown

print(render_markdown(), end="")
