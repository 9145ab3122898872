"""Cycle-exact golden models of the switch's allocators, crossbar and output unit.

Each model mirrors one RTL block of :mod:`unifab.hdl.switch` cycle by cycle:

* :class:`ISlipModel` — :class:`~unifab.hdl.switch.allocator.ISlipAllocator`;
* :class:`WavefrontModel` — :class:`~unifab.hdl.switch.allocator.WavefrontAllocator`;
* :class:`CrossbarModel` — :class:`~unifab.hdl.switch.crossbar.Crossbar`;
* :class:`OutputUnitModel` — the credit and ownership state of
  :class:`~unifab.hdl.switch.output_unit.OutputUnit`.

Request and grant matrices are lists of ints, one per input, bit ``o`` for output ``o``.
``step`` computes the combinational outputs of one cycle from the current state and then
advances the state to the next clock edge.
"""

from dataclasses import dataclass

__all__ = [
    "CrossbarModel",
    "CrossbarResult",
    "ISlipModel",
    "OutputSend",
    "OutputUnitModel",
    "WavefrontModel",
    "check_matching",
]


def _round_robin(bits: int, pointer: int, n: int) -> int:
    """Index of the first set bit of ``bits`` at or after ``pointer`` (cyclically), or -1."""
    for k in range(n):
        idx = (pointer + k) % n
        if bits >> idx & 1:
            return idx
    return -1


def _check_requests(requests: list[int], n_in: int, n_out: int) -> None:
    if len(requests) != n_in:
        raise ValueError(f"need {n_in} request rows, got {len(requests)}")
    for i, row in enumerate(requests):
        if not 0 <= row < 1 << n_out:
            raise ValueError(f"request row {i} = {row:#x} does not fit {n_out} outputs")


def check_matching(requests: list[int], grants: list[int], n_out: int) -> None:
    """Raise AssertionError unless ``grants`` is a matching inside ``requests``.

    At most one grant per input and per output, and only where a request bit is set.
    """
    used = 0
    for i, (req, g) in enumerate(zip(requests, grants, strict=True)):
        if g & (g - 1):
            raise AssertionError(f"input {i} granted several outputs: {g:#b}")
        if g & ~req:
            raise AssertionError(f"input {i} granted output mask {g:#b} it did not request")
        if g & used:
            raise AssertionError(f"output {g.bit_length() - 1} granted to two inputs")
        used |= g
    if used >> n_out:
        raise AssertionError(f"grant to a nonexistent output: {used:#b}")


class ISlipModel:
    """iSLIP with ``iterations`` rounds, as the RTL does it.

    Every round, each unmatched output grants the first requesting unmatched input at or
    after its grant pointer; each unmatched input accepts the first granting output at or
    after its accept pointer. Only accepts of the *first* round move pointers: the input's
    accept pointer to one past the accepted output, the output's grant pointer to one past
    the accepting input. Pointers start at 0.
    """

    def __init__(self, n_in: int, n_out: int, iterations: int = 1) -> None:
        if n_in < 1 or n_out < 1:
            raise ValueError(f"need at least one input and one output, not {n_in}x{n_out}")
        if not 1 <= iterations <= 8:
            raise ValueError(f"iterations must be 1..8, not {iterations!r}")
        self.n_in, self.n_out, self.iterations = n_in, n_out, iterations
        self.grant_ptr = [0] * n_out
        self.accept_ptr = [0] * n_in

    def step(self, requests: list[int]) -> list[int]:
        """The matching for ``requests`` this cycle; then update the pointers."""
        ni, no = self.n_in, self.n_out
        _check_requests(requests, ni, no)
        match = [0] * ni
        new_grant_ptr, new_accept_ptr = list(self.grant_ptr), list(self.accept_ptr)
        for it in range(self.iterations):
            matched_in = sum(1 << i for i in range(ni) if match[i])
            matched_out = 0
            for g in match:
                matched_out |= g
            granted = [0] * ni  # granted[i]: outputs granting input i this round
            for o in range(no):
                if matched_out >> o & 1:
                    continue
                col = sum(1 << i for i in range(ni) if requests[i] >> o & 1) & ~matched_in
                i = _round_robin(col, self.grant_ptr[o], ni)
                if i >= 0:
                    granted[i] |= 1 << o
            for i in range(ni):
                o = _round_robin(granted[i], self.accept_ptr[i], no)
                if o < 0:
                    continue
                match[i] |= 1 << o
                if it == 0:
                    new_accept_ptr[i] = (o + 1) % no
                    new_grant_ptr[o] = (i + 1) % ni
        self.grant_ptr, self.accept_ptr = new_grant_ptr, new_accept_ptr
        return match


class WavefrontModel:
    """Wavefront allocation over the request matrix padded to ``n = max(n_in, n_out)``.

    Diagonal ``d`` holds the cells ``(i, o)`` with ``(i + o) % n == d``. Starting with the
    top-priority diagonal and going through all ``n`` in order, a cell is granted when it is
    requested and its row and column are still free. The top diagonal starts at 0 and moves
    to the next one every cycle.
    """

    def __init__(self, n_in: int, n_out: int) -> None:
        if n_in < 1 or n_out < 1:
            raise ValueError(f"need at least one input and one output, not {n_in}x{n_out}")
        self.n_in, self.n_out = n_in, n_out
        self.n = max(n_in, n_out)
        self.top = 0

    def step(self, requests: list[int]) -> list[int]:
        """The matching for ``requests`` this cycle; then rotate the top diagonal."""
        ni, no, n = self.n_in, self.n_out, self.n
        _check_requests(requests, ni, no)
        grants = [0] * ni
        col_used = 0
        for d in range(n):
            diag = (self.top + d) % n
            for i in range(ni):
                o = (diag - i) % n
                if o < no and requests[i] >> o & 1 and not grants[i] and not col_used >> o & 1:
                    grants[i] = 1 << o
                    col_used |= 1 << o
        self.top = (self.top + 1) % n
        return grants


@dataclass(frozen=True)
class CrossbarResult:
    """The crossbar's combinational outputs in one cycle."""

    outputs: list[int]
    valid: int
    source: list[int]


class CrossbarModel:
    """The AND-OR crossbar: ``outputs[o]`` is the OR of the words of the inputs selecting
    ``o``; ``source[o]`` the highest-numbered such input (0 when none); ``error`` is the
    sticky one-hot flag *as the RTL shows it*: it rises the cycle after a select matrix with
    two bits in one row or one column.
    """

    def __init__(self, n_in: int, n_out: int, width: int) -> None:
        self.n_in, self.n_out, self.width = n_in, n_out, width
        self.error = False

    def step(self, select: list[int], inputs: list[int]) -> CrossbarResult:
        """Outputs for this cycle; then update the sticky error flag."""
        ni, no = self.n_in, self.n_out
        _check_requests(select, ni, no)
        outputs, source, valid = [0] * no, [0] * no, 0
        bad = False
        for o in range(no):
            rows = [i for i in range(ni) if select[i] >> o & 1]
            for i in rows:
                outputs[o] |= inputs[i]
            if rows:
                valid |= 1 << o
                source[o] = rows[-1]
            bad |= len(rows) > 1
        bad |= any(row & (row - 1) for row in select)
        self.error |= bad
        return CrossbarResult(outputs, valid, source)


@dataclass(frozen=True)
class OutputSend:
    """A flit the crossbar hands to an output unit."""

    vc: int
    head: bool
    tail: bool
    src: int


class OutputUnitModel:
    """Downstream credits and output-VC ownership of one switch output.

    Each VC starts with ``depth`` credits; a send spends one, each returned credit adds one.
    A head flit that is not also a tail locks the VC for its input (``owner``) until that
    message's tail flit is sent; single-flit messages never lock. Raises ValueError on a send
    without credit or a credit returned above ``depth`` (the RTL's counter would wrap).
    """

    def __init__(self, vcs: int, depth: int) -> None:
        self.vcs, self.depth = vcs, depth
        self.credits = [depth] * vcs
        self.busy = [False] * vcs
        self.owner = [0] * vcs
        self.flits_out = [0] * 4
        self.credit_stalls = 0

    def credit_ok(self, vc: int) -> bool:
        return self.credits[vc] != 0

    def may_head(self, vc: int) -> bool:
        return not self.busy[vc]

    def step(self, send: OutputSend | None, returns: int = 0, *, wanted: bool = False) -> None:
        """Advance one clock edge with ``send`` (or none) and credit-return mask ``returns``."""
        credits = list(self.credits)
        if send is not None:
            v = send.vc
            if credits[v] == 0:
                raise ValueError(f"send on VC {v} without a credit")
            credits[v] -= 1
            if send.tail:
                self.busy[v] = False
            elif send.head:
                self.busy[v] = True
                self.owner[v] = send.src
            self.flits_out[v % 4] += 1
        for v in range(self.vcs):
            if returns >> v & 1:
                credits[v] += 1
                if credits[v] > self.depth:
                    raise ValueError(f"credit returned on VC {v} above depth {self.depth}")
        self.credits = credits
        self.credit_stalls += bool(wanted)
