"""`legato demo`: the travel booking, in process, on the embedded SQLite log."""
