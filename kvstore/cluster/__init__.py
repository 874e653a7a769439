"""Local clusters: node processes on this machine, started, signalled and stopped by PID."""
