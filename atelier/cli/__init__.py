"""The `atelier` command line: `atelier <group> <verb>`."""
