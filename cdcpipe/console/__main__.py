"""``python -m cdcpipe.console``: what the runtime's console service runs."""

from cdcpipe.console import serve

serve()
