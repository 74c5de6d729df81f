"""Registered on import of ir_d2.modeling."""
