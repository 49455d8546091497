"""`panicdemo`: the whole system on one machine, with real parts and a scripted scenario.

world.py starts the parts (gateway subprocess, dispatch receiver, virtual LoRa bridge on a pty,
simulated buttons running the real firmware), scenario.py drives the script, summary.py
computes the outcome from what dispatch received and what the gateway rejected, view.py
draws the live terminal view.
"""
