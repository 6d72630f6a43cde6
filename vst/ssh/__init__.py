"""Stores on other machines, reached over SSH: the protocol, ``vst serve`` and the client."""
