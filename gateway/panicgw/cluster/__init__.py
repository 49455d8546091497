"""Several gateways acting as one system over an MQTT broker (issue 14).

Each gateway stays whole on its own: it stores, acknowledges and forwards every alarm with
or without the others. Over the broker the group shares what it must agree on: who heard
which frame (replay windows, "heard by any", the fleet view), which one gateway transmits
each LoRa ACK, who reports a silence, and the registry (keys encrypted, every message
authenticated with the group secret). Modules:

- ``crypto``: the group secret and the keys derived from it;
- ``messages``: topics, formats, and the codec (tags, replays); ``sequence``: message
  numbers that never repeat;
- ``election``: one downlink per uplink;
- ``state``: the union of receptions; ``members``: liveness and who reports a silence;
- ``registry_replica``: the group's registry, newest generation wins;
- ``link``: paho-mqtt on its own threads; ``node``: all of it wired for the daemon;
- ``settings``: the ``[cluster]`` section.

docs/deployment.md describes the broker side (Mosquitto, clusters, TLS, ACLs, failures).
"""
