"""What a flashed board holds: the CIRCUITPY file tree per role (code, libraries, manifest).

Below both the installer's tools (``panictool flash`` writes it) and the simulator (a
simulated board runs exactly it), so neither depends on the other for it.
"""
