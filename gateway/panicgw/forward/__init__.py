"""Where stored events go: the dispatch webhook (and later other routes), MQTT."""
