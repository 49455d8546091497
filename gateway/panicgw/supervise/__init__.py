"""Which buttons have gone silent, and the trouble events that follow."""
