"""Package list for setuptools; everything else is in pyproject.toml.

``plugins/`` installs as ``mcp_plugins`` and ``assets/`` as ``mcp_assets`` (never as a bare
top-level ``plugins`` module, which would collide with other projects).
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["mcp_core*", "mcp_remote*", "mcp_app*"])
    + ["mcp_plugins"] + [f"mcp_plugins.{p}" for p in find_packages("plugins")]
    + ["mcp_assets"],
    package_dir={"mcp_plugins": "plugins", "mcp_assets": "assets"},
    package_data={"mcp_assets": ["*.js", "*.css", "*.svg", "*.png"], "mcp_remote": ["proto/*.proto"],
                  "mcp_plugins": ["*.md"]},
)
