"""swell: capacity as code for a collaboration platform (web, chat, video) on OVHcloud."""

__version__ = "0.1.0"
