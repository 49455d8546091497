"""What happens to a frame: verify, deduplicate, open or join an incident, commit and ACK."""
