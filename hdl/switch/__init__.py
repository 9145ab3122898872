"""The unifab switch: route compute, programmable tables, input and output units, allocators
and crossbar (``docs/switch.md``)."""
