"""AuthPI Server: a self-hostable identity provider speaking the AuthPI wire protocol."""

__version__ = "0.1.0"
