"""The SIA DC-09 route: the gateway as an alarm transmitter to a centre's receiver (docs/sia.md).

One job per module: ``message`` (SIA-DCS / ADM-CID bodies from our events), ``frame`` (the
DC-09 frame: CRC, length, header), ``crypto`` (AES-CBC and the standard's pad), ``reply``
(ACK/NAK/DUH/RSP judged against what we sent), ``transport`` (TCP/UDP to one address),
``client`` (retries, NAK clock correction, failover, link tests), ``sequence`` and ``turns``
(the per-receiver sequence number and the alarms-first queue), ``settings`` (a ``[[sia]]``
table checked key by key).
"""
