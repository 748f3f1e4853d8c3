"""The modes, plugged into the engine: for each, how a transaction of it, read back
from the log, is driven (its machine with its plan, and its ops' calls).

A new mode adds its machine (``modes/``), its driver here, and its public API
(``legato/<mode>.py``), and is listed by the coordinator; it touches no other
mode's files.
"""
