"""Multi-run experiments built from configs: `fgvc demo` and the erudite protocol."""
