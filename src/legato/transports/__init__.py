"""How an op reaches its participant (the coordinator's side)."""
