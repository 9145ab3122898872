"""unifab: super-node fabric model (Python side)."""
