"""Page bodies of the dashboard; the files in dashboard/pages/ only call their ``render()``."""
