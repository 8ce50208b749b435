"""The default mappings (CONTRACT.md as YAML), shipped as package data."""
