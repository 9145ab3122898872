"""Deliberately broken RTL variants, built without touching the RTL files.

:func:`mutant` takes the source of a block's ``elaborate``, replaces one exact piece of text
and compiles the result in the block's own module namespace as a subclass. If the RTL changes
so that the text no longer occurs, the mutation test errors out instead of silently testing
the unmodified block.
"""

from __future__ import annotations

import inspect
import sys
import textwrap
import types

__all__ = ["mutant"]


def mutant(cls: type, old: str, new: str, *, method: str = "elaborate") -> type:
    """A subclass of ``cls`` whose ``method`` has ``old`` replaced by ``new`` (exactly once)."""
    source = textwrap.dedent(inspect.getsource(getattr(cls, method)))
    count = source.count(old)
    if count != 1:
        raise ValueError(f"{cls.__name__}.{method}: expected {old!r} once, found it {count} times")
    module_globals = vars(sys.modules[cls.__module__])
    namespace = dict(module_globals)
    code = compile(source.replace(old, new), f"<mutant of {cls.__name__}.{method}>", "exec")
    exec(code, namespace)
    made = namespace[method]
    # Run with the module's live globals (not the copy), so that a harness that swaps a
    # module-level name (e.g. the CRC block in the link proof) swaps it for the mutant too.
    func = types.FunctionType(made.__code__, module_globals, made.__name__, made.__defaults__)
    return type(f"{cls.__name__}Mutant", (cls,), {method: func, "__module__": __name__})
