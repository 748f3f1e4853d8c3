"""The modes as pure state machines: ``(state, event) -> (new state, commands)``."""
