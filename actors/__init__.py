"""Ray actors and the pure engines they wrap."""
