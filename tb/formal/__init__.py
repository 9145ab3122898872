"""Formal verification of unifab's link layer, switch and shared library blocks (issue 7).

* :mod:`formal.engine` runs SymbiYosys (the ``yowasp-sby`` wheel, Boolector as the solver) on
  a harness and keeps its files and counterexample VCDs under ``build/formal/<proof>/``;
* :mod:`formal.props` has the property helpers (stream contracts, registered ``$past``
  copies, :func:`~formal.props.peek` at internal signals, reduced fabric sizes);
* :mod:`formal.mutate` builds deliberately broken RTL variants without editing the RTL;
* :mod:`formal.streams` finds every stream and AXI channel of a block from its signature and
  states the valid/ready contract on them (assumed at inputs, asserted at outputs, covered),
  and the credit rule at fabric ports;
* :mod:`formal.harness_lib`, :mod:`formal.harness_link`, :mod:`formal.harness_switch`,
  :mod:`formal.harness_home`, :mod:`formal.harness_streams` hold one harness per proof;
  :mod:`formal.check` is the pytest glue.

``tests/test_formal_*.py`` run them; ``docs/verification.md`` lists the properties.
"""
