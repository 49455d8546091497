"""panicconsole: the police dispatch console (operators see, own and close alarms)."""

__version__ = "0.1.0"
