"""The node runtime: asyncio execution of what the core decides."""
