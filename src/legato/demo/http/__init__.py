"""`legato demo --http`: the travel booking through real HTTP services and `legato serve`.

Four participant services (``apps.py``), each its own process and database
(``service.py``, ``store.py``), faults injected into their answers
(``faults.py``); the demo starts them and the coordinator (``processes.py``),
books the trips through the native API (``demo.py``, ``saga.py``) and checks the
services' databases (``check.py``).
"""
