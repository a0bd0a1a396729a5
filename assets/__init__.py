"""Static files the app serves (JS components, CSS); installed as the package ``mcp_assets``."""
