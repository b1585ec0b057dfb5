"""Core: errors, the configuration, the one event schema, the catalog of every path stages hand
each other. Imports nothing of ours outside core and no engine."""
