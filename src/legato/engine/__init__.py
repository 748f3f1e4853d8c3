"""The engine: what drives every transaction, whatever its mode.

``port`` holds the narrow protocols it is typed against and hands out;
``records.transition`` is the one path every transition of every mode goes
through; ``runner`` drives one transaction; ``core.Engine`` claims, leases and
runs the runners; ``handle`` is what a caller waits on.
"""
