"""Cycle-exact Python golden models of unifab RTL blocks."""
