"""Built-in measurement plugins (installed as ``mcp_plugins``), registered like third-party ones."""
