"""Amaranth RTL of the unifab fabric."""
