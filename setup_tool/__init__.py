"""setup-tool: make an on-premise SuperOffice database safe for SuperOffice invites."""

__version__ = "0.1.0"
