"""Unit tests of the link-layer blocks on Amaranth's simulator, against the golden models.

Every random case draws from ``random.Random(seed)``; the seed is ``UNIFAB_SEED`` if set, else
the case's default, and is printed (``pytest -s`` or on failure). To replay a failure::

    UNIFAB_SEED=<seed> .venv/bin/python -m pytest 'tests/test_link_units.py::<case id>' -s

``UNIFAB_VCD=dir`` also writes a waveform per case into ``dir``.
"""

import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from amaranth import Elaboratable, Module, ResetInserter, Signal

from unifab.crc import crc32c_bits
from unifab.flit import FabricParams, LinkKind, flit_layout, link_flit_layout
from unifab.hdl.lib.arbiter import RoundRobin, first_after, onehot_index, onehot_mux
from unifab.hdl.link.crc import Crc32c
from unifab.hdl.link.credits import CreditCounter, CreditReturn
from unifab.hdl.link.layer import LINK_COUNTERS, LinkLayer
from unifab.hdl.link.replay import ReplayBuffer
from unifab.hdl.link.rx import LinkRx
from unifab.hdl.link.training import LinkTraining
from unifab.hdl.link.tx import LinkTx
from unifab.models.link import (
    CreditCounterModel,
    CreditReturnModel,
    LinkFields,
    LinkRxModel,
    ReplayBufferModel,
    RoundRobinModel,
    decode_link_flit,
    encode_link_flit,
    link_crc_ok,
)
from unifab.params import LinkParams
from unifab.testing import seed_from_env, simulate

SEQ, IDLE, INIT = LinkKind.SEQ.value, LinkKind.IDLE.value, LinkKind.INIT.value


# --------------------------------------------------------------------------------------------
# Harness


def make_rng(default: int) -> random.Random:
    """The case's random generator; ``UNIFAB_SEED`` overrides the default seed."""
    return random.Random(seed_from_env(default))


class WithClock(Elaboratable):
    """``dut`` plus a register, so that the ``sync`` domain exists even for purely
    combinational designs."""

    def __init__(self, dut: Elaboratable) -> None:
        self.dut = dut

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        toggle = Signal()
        m.d.sync += toggle.eq(~toggle)
        return m


class Pins:
    """``ctx.set`` that skips unchanged values (each set settles the whole design)."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.last: dict[int, tuple[object, int]] = {}

    def set(self, sig, value: int) -> None:
        value = int(value)
        key = id(sig)
        old = self.last.get(key)
        if old is None or old[1] != value:
            self.last[key] = (sig, value)
            self.ctx.set(sig, value)


def pack_credits(credits, fab: FabricParams) -> int:
    return sum(c << (i * fab.credit_bits) for i, c in enumerate(credits))


# --------------------------------------------------------------------------------------------
# CRC


BODY_WIDTH = link_flit_layout(FabricParams(), with_crc=False).size


@pytest.mark.parametrize("width", [1, 7, 8, 33, 64, 146, BODY_WIDTH])
def test_crc32c(width: int) -> None:
    rng = make_rng(100 + width)
    values = [0, (1 << width) - 1, *(1 << i for i in range(0, width, max(1, width // 7)))]
    values += [rng.getrandbits(width) for _ in range(40)]
    dut = Crc32c(width=width)

    async def bench(ctx):
        for v in values:
            ctx.set(dut.data, v)
            assert ctx.get(dut.crc) == crc32c_bits(v, width), hex(v)

    simulate(dut, bench, name=f"crc{width}", clock=False)


def test_crc32c_check_value() -> None:
    """The RTL reproduces the standard CRC-32C check value of ``b"123456789"``."""
    dut = Crc32c(width=72)

    async def bench(ctx):
        ctx.set(dut.data, int.from_bytes(b"123456789", "little"))
        assert ctx.get(dut.crc) == 0xE3069283

    simulate(dut, bench, name="crc_check", clock=False)


# --------------------------------------------------------------------------------------------
# Credits


@pytest.mark.parametrize(
    "depth,max_give,legal,seed",
    [(1, 1, True, 1), (5, 3, True, 2), (16, 15, True, 3), (16, 15, False, 4), (3, 7, False, 5)],
)
def test_credit_counter(depth: int, max_give: int, legal: bool, seed: int) -> None:
    rng = make_rng(seed)
    # A separate stream for the cycles whose `give` does not count (`give_valid` low, a junk
    # value on `give`), so that the legal/illegal give sequence stays the one above.
    junk = make_rng(seed + 100)
    dut = CreditCounter(depth=depth, max_give=max_give)
    model = CreditCounterModel(depth)
    seen_overflow = False
    junk_given = 0

    async def bench(ctx):
        nonlocal seen_overflow, junk_given
        pins = Pins(ctx)
        for cyc in range(600):
            fill = rng.random() < 0.02 or cyc == 0
            consume = model.available and rng.random() < 0.5
            # Legal peers return at most what was consumed (the free buffer space).
            room = depth - model.count + int(consume)
            limit = min(max_give, room) if legal else max_give
            r = rng.random()
            give = 0 if r < 0.6 or limit == 0 else (1 if r < 0.9 else rng.randint(1, limit))
            give = min(give, limit)
            pins.set(dut.fill, fill)
            pins.set(dut.consume, consume)
            give_valid = give != 0 or junk.random() < 0.5
            pins.set(dut.give_valid, give_valid)
            pins.set(dut.give, give if give_valid else junk.randint(1, max_give))
            junk_given += not give_valid
            assert ctx.get(dut.count) == model.count, cyc
            assert ctx.get(dut.available) == model.available, cyc
            assert ctx.get(dut.overflow) == model.overflow, cyc
            model.step(fill=fill, consume=consume, give=give)
            seen_overflow |= model.overflow
            await ctx.tick()

    simulate(dut, bench, name=f"credit_counter_{seed}")
    assert seen_overflow == (not legal)
    assert junk_given > 100


@pytest.mark.parametrize("depth,field_bits,seed", [(16, 4, 1), (16, 2, 2), (7, 1, 3), (40, 3, 4)])
def test_credit_return(depth: int, field_bits: int, seed: int) -> None:
    rng = make_rng(seed)
    dut = CreditReturn(depth=depth, field_bits=field_bits)
    model = CreditReturnModel(depth, field_bits)
    saturated = 0

    async def bench(ctx):
        nonlocal saturated
        pins = Pins(ctx)
        p_pop, p_take = 0.5, 0.3
        for cyc in range(800):
            if cyc % 100 == 0:
                p_pop, p_take = rng.choice([(0.9, 0.05), (0.5, 0.3), (0.2, 0.8)])
            clear = rng.random() < 0.01
            take = rng.random() < p_take
            pending = model.pending if take else 0
            pop = model.owed - pending < depth and rng.random() < p_pop
            pins.set(dut.clear, clear)
            pins.set(dut.pop, pop)
            pins.set(dut.take, take)
            assert ctx.get(dut.pending) == model.pending, cyc
            assert ctx.get(dut.nonzero) == model.nonzero, cyc
            saturated += model.owed > model.field_max
            model.step(clear=clear, pop=pop, take=take)
            await ctx.tick()

    simulate(dut, bench, name=f"credit_return_{seed}")
    assert saturated > 0, "the capped-pending case was never exercised"


# --------------------------------------------------------------------------------------------
# Replay buffer


def test_replay_model_examples() -> None:
    """The reference model itself, on a hand-worked go-back-N story."""
    m = ReplayBufferModel(depth=4, seq_bits=4)
    for d in (10, 11, 12, 13):
        m.step(wr_valid=True, wr_data=d)
    assert (m.unacked, m.wr_ready, m.rd_seq, m.rd_data) == (4, False, 0, 10)
    m.step(wr_valid=True, wr_data=99)  # full: refused
    assert m.tail == 4
    for _ in range(3):
        m.step(rd_next=True)
    assert m.rd_seq == 3
    m.step(ack_valid=True, ack_seq=0, rewind=True)  # NAK after seq 0: back to seq 1
    assert (m.head, m.send, m.rd_data) == (1, 1, 11)
    m.step(ack_valid=True, ack_seq=2)  # a late ACK covers 1..2, beyond send: skip ahead
    assert (m.head, m.send, m.rd_data, m.skipped) == (3, 3, 13, True)
    m.step(ack_valid=True, ack_seq=2)  # stale
    m.step(ack_valid=True, ack_seq=9)  # beyond tail: out of window
    assert (m.acked, m.head, m.unacked) == (False, 3, 1)
    m.step(ack_valid=True, ack_seq=3, rd_next=True)
    assert (m.acked, m.unacked, m.rd_valid) == (True, 0, False)
    rr = RoundRobinModel(3)
    assert [rr.grant(0b111), rr.grant(0b110), rr.grant(0)] == [0, 1, None]
    rr.step(0b101, advance=True)
    assert rr.grant(0b101) == 2


REPLAY_PHASES = [
    (0.5, 0.5, 0.5),
    (0.95, 0.5, 0.1),
    (0.1, 0.9, 0.5),
    (0.95, 0.95, 0.9),
    (0.5, 0.1, 0.3),
    (0.95, 0.1, 0.05),
]


@pytest.mark.parametrize("depth,seq_bits,seed", [(2, 4, 1), (4, 4, 2), (8, 4, 3), (32, 8, 4)])
def test_replay_buffer(depth: int, seq_bits: int, seed: int) -> None:
    rng = make_rng(seed)
    width = 24
    dut = ReplayBuffer(depth=depth, width=width, seq_bits=seq_bits)
    model = ReplayBufferModel(depth, seq_bits)
    mod = 1 << seq_bits
    stats: Counter = Counter()

    async def bench(ctx):
        pins = Pins(ctx)
        p_wr = p_rd = p_ack = 0.5
        for cyc in range(1500):
            if cyc % 120 == 0:
                # Phases in turn (filling, balanced, emptying, ...), so every seed covers all.
                p_wr, p_rd, p_ack = REPLAY_PHASES[cyc // 120 % len(REPLAY_PHASES)]
            restart = rng.random() < 0.004
            wr_valid = rng.random() < p_wr
            wr_data = (cyc * 0x9E37) & ((1 << width) - 1)  # unique: 0x9E37 is odd
            rd_next = rng.random() < p_rd
            rewind = rng.random() < 0.03
            ack_valid, ack_seq = rng.random() < p_ack, rng.randrange(mod)
            r, n = rng.random(), model.unacked
            if r < 0.6 and n:  # in window: frees 1..unacked entries (some beyond send)
                ack_seq = (model.head + rng.randint(1, n) - 1) % mod
            elif r < 0.8:  # stale: at or behind head - 1
                ack_seq = (model.head - 1 - rng.randrange(mod // 2)) % mod
            pins.set(dut.restart, restart)
            pins.set(dut.wr_valid, wr_valid)
            pins.set(dut.wr_data, wr_data)
            pins.set(dut.rd_next, rd_next)
            pins.set(dut.rewind, rewind)
            pins.set(dut.ack_valid, ack_valid)
            pins.set(dut.ack_seq, ack_seq)
            where = f"cycle {cyc}"
            assert ctx.get(dut.wr_ready) == model.wr_ready, where
            assert ctx.get(dut.tail) == model.tail, where
            assert ctx.get(dut.unacked) == model.unacked, where
            assert ctx.get(dut.rd_valid) == model.rd_valid, where
            assert ctx.get(dut.rd_seq) == model.rd_seq, where
            if model.rd_valid:
                # Data read at a sequence number is what was written for it: never overwritten.
                assert ctx.get(dut.rd_data) == model.rd_data, where
            assert ctx.get(dut.acked) == (ack_valid and model.ack_in_window(ack_seq)), where
            model.step(
                restart=restart,
                wr_valid=wr_valid,
                wr_data=wr_data,
                ack_valid=ack_valid,
                ack_seq=ack_seq,
                rewind=rewind,
                rd_next=rd_next,
            )
            stats["full"] += not model.wr_ready
            stats["acked"] += model.acked
            stats["skipped"] += model.skipped
            stats["stale"] += ack_valid and not model.acked
            stats["sent"] += rd_next and model.rd_valid
            await ctx.tick()

    simulate(dut, bench, name=f"replay_{depth}_{seq_bits}")
    print(dict(stats))
    for what in ("full", "acked", "skipped", "stale", "sent"):
        assert stats[what] > 0, f"never exercised: {what}"


# --------------------------------------------------------------------------------------------
# Round-robin arbiter


@pytest.mark.parametrize("count,seed", [(1, 1), (2, 2), (3, 3), (5, 4), (8, 5)])
def test_round_robin(count: int, seed: int) -> None:
    rng = make_rng(seed)
    dut = RoundRobin(count=count)
    model = RoundRobinModel(count)
    waiting = [0] * count  # grants to others since this input started requesting
    requests = 0
    grants = 0

    async def bench(ctx):
        nonlocal requests, grants
        pins = Pins(ctx)
        for cyc in range(800):
            advance = rng.random() < 0.8
            pins.set(dut.requests, requests)
            pins.set(dut.advance, advance)
            expect = model.grant(requests)
            assert ctx.get(dut.valid) == (expect is not None), cyc
            if expect is not None:
                g = ctx.get(dut.grant)
                assert g == expect, cyc
                assert ctx.get(dut.grant_onehot) == 1 << expect, cyc
                assert requests >> g & 1, "granted a non-requester"
            else:
                assert ctx.get(dut.grant_onehot) == 0, cyc
            model.step(requests, advance)
            used = expect if advance else None
            if used is not None:
                grants += 1
                assert waiting[used] < count, f"input {used} starved for {waiting[used]} grants"
            nxt = 0
            for i in range(count):
                asking = requests >> i & 1
                if used == i:
                    keep = rng.random() < 0.5  # the granted input may ask again at once
                elif asking:
                    keep = rng.random() < 0.95  # a waiting input keeps asking
                else:
                    keep = rng.random() < 0.3
                if keep:
                    nxt |= 1 << i
                if not (asking and keep) or used == i:
                    waiting[i] = 0
                elif used is not None:
                    waiting[i] += 1
            requests = nxt
            await ctx.tick()

    simulate(WithClock(dut), bench, name=f"rr_{count}")
    assert grants > 200


def first_after_model(requests: int, pointer: int, n: int, *, inclusive: bool) -> int:
    """One-hot of the first request from ``pointer`` (or after it), cyclically; zero when
    nobody asks or the pointer is out of range."""
    if not 0 <= pointer < n:
        return 0
    for k in range(0 if inclusive else 1, n + (0 if inclusive else 1)):
        idx = (pointer + k) % n
        if requests >> idx & 1:
            return 1 << idx
    return 0


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8])
def test_first_after_exhaustive(n: int) -> None:
    """The flat round-robin search against the model for every request vector and pointer
    (out-of-range pointers included: the result is zero, as the old priority chain gave)."""
    m = Module()
    requests = Signal(n)
    pointer = Signal(4)
    after = Signal(n)
    from_ = Signal(n)
    index = Signal(range(max(n, 2)))
    m.d.comb += [
        after.eq(first_after(requests, [pointer == b for b in range(n)], inclusive=False)),
        from_.eq(first_after(requests, [pointer == b for b in range(n)], inclusive=True)),
    ]
    m.d.comb += index.eq(onehot_index(after, n))
    checked = 0

    async def bench(ctx):
        nonlocal checked
        for req in range(1 << n):
            for ptr in range(min(16, n + 3)):
                ctx.set(requests, req)
                ctx.set(pointer, ptr)
                want_after = first_after_model(req, ptr, n, inclusive=False)
                assert ctx.get(after) == want_after, (req, ptr)
                assert ctx.get(from_) == first_after_model(req, ptr, n, inclusive=True), (req, ptr)
                assert ctx.get(index) == max(want_after.bit_length() - 1, 0), (req, ptr)
                checked += 1

    simulate(m, bench, name=f"first_after_{n}", clock=False)
    assert checked == (1 << n) * min(16, n + 3)


@pytest.mark.parametrize("n", [1, 3, 4])
def test_onehot_mux(n: int) -> None:
    """A one-hot select picks its value (values of different widths, zero-extended); zero
    selects zero."""
    m = Module()
    select = Signal(n)
    values = [Signal(3 + i, name=f"value{i}") for i in range(n)]
    out = Signal(3 + n)
    m.d.comb += out.eq(onehot_mux(select, values))
    rng = make_rng(n)
    checked = 0

    async def bench(ctx):
        nonlocal checked
        for _ in range(50):
            data = [rng.getrandbits(len(v)) for v in values]
            for v, d in zip(values, data, strict=True):
                ctx.set(v, d)
            for i in range(n):
                ctx.set(select, 1 << i)
                assert ctx.get(out) == data[i], (i, data)
                checked += 1
            ctx.set(select, 0)
            assert ctx.get(out) == 0

    simulate(m, bench, name=f"onehot_mux_{n}", clock=False)
    assert checked == 50 * n


# --------------------------------------------------------------------------------------------
# Link transmitter


@dataclass
class TxCase:
    seq_bits: int
    replay_depth: int
    rx_depth: int
    seed: int
    p_valid: float = 0.5
    p_loss: float = 0.05


@pytest.mark.parametrize(
    "case",
    [
        TxCase(seq_bits=8, replay_depth=32, rx_depth=8, seed=1),
        TxCase(seq_bits=5, replay_depth=16, rx_depth=4, seed=2, p_valid=0.8),
        TxCase(seq_bits=4, replay_depth=8, rx_depth=16, seed=3, p_valid=0.3, p_loss=0.1),
    ],
    ids=["seq8", "seq5", "seq4"],
)
def test_link_tx(case: TxCase) -> None:
    rng = make_rng(case.seed)
    fab = FabricParams(seq_bits=case.seq_bits)
    params = LinkParams(
        fabric=fab,
        replay_depth=case.replay_depth,
        rx_depth=case.rx_depth,
        ack_timeout=40,
        credit_delay=4,
    )
    dut = LinkTx(params)
    V, M, rx_depth = fab.vcs, 1 << fab.seq_bits, case.rx_depth
    flit_bits = flit_layout(fab).size
    lay = dict(link_flit_layout(fab))
    ack_nak_mask = sum(((1 << lay[n].width) - 1) << lay[n].offset for n in ("ack", "nak"))
    crc_mask = ((1 << 32) - 1) << lay["crc"].offset
    cmax = (1 << fab.credit_bits) - 1
    total = 1400  # cycles with traffic; then drain
    # Link phases: down (INIT) at 0..9 and around the middle; ACK silence twice.
    restart_at = (10, total // 2 + 12)
    down = set(range(10)) | set(range(total // 2, total // 2 + 12))
    silent = set(range(300, 300 + 90)) | set(range(1000, 1000 + 90))
    quiet = set(range(560, 660))
    stats: Counter = Counter()

    async def bench(ctx):
        pins = Pins(ctx)
        # Sources: per-VC queues of flits handed to the transmitter, and what the peer expects.
        src_valid = [False] * V
        src_flit = [0] * V
        serial = [0] * V
        expect_rx: list[list[int]] = [[] for _ in range(V)]  # handed over and not lost
        peer_rx: list[list[int]] = [[] for _ in range(V)]
        # Local credit returns owed (ret_credits / ret_pending / ret_take).
        owed = [CreditReturnModel(64, fab.credit_bits) for _ in range(V)]
        # Epoch state (reset on each restart).
        created: list[tuple] = []  # (has_flit, vc, flit, credits) per sequence number
        first_sent: dict[int, int] = {}  # first transmission of each, minus ACK/NAK/CRC
        head_abs = 0
        head_hist: dict[int, int] = {}
        last_seq = M - 1
        peer_expected = 0
        peer_occ = [0] * V
        peer_owed = [0] * V
        peer_nak = peer_nak_sent = False
        returns: deque = deque()  # (deliver_cycle, ack, nak, credits)
        hist: dict[int, dict] = {}
        prev_timeouts = 0
        replay_due: int | None = None  # cycle a timeout was seen; a replay must follow
        progress = [0]  # cycles with ACK progress (and restarts): they reset the ACK timer
        cyc = 0
        while True:
            draining = cyc >= total
            up = cyc not in down and cyc not in restart_at
            start = cyc in restart_at
            init_seen = rng.random() < 0.5 if not up else True
            ack_out = rng.randrange(M)
            stays_up = all(cyc + k not in down and cyc + k not in restart_at for k in range(4))
            nak_req = up and stays_up and rng.random() < 0.03
            hist[cyc] = dict(up=up, init_seen=init_seen, ack_out=ack_out, nak=nak_req)
            if start:
                # Link restart: what the peer did not accept is lost; both sides start over.
                for has, vc, flit, _ in created[peer_expected:]:
                    if has:
                        expect_rx[vc].remove(flit)
                created, head_abs, last_seq, peer_expected = [], 0, M - 1, 0
                first_sent = {}
                peer_occ, peer_owed = [0] * V, [0] * V
                peer_nak = peer_nak_sent = False
                returns.clear()
                progress.append(cyc)
                replay_due = None
            # Peer's return message (ACK/NAK/credits) due this cycle.
            ret = returns.popleft() if returns and returns[0][0] == cyc else None
            pins.set(dut.up, up)
            pins.set(dut.start, start)
            pins.set(dut.init_seen, init_seen)
            pins.set(dut.ack_out, ack_out)
            pins.set(dut.nak_req, nak_req)
            pins.set(dut.peer_ack_valid, ret is not None)
            pins.set(dut.peer_credits_valid, ret is not None and any(ret[3]))
            if ret is not None:
                pins.set(dut.peer_ack, ret[1])
                pins.set(dut.peer_nak, ret[2])
                pins.set(dut.peer_credits.as_value(), pack_credits(ret[3], fab))
            for v in range(V):
                lull = cyc in quiet  # no data: owed credits must leave in credit-only flits
                if not src_valid[v] and not (draining or lull) and rng.random() < case.p_valid:
                    src_valid[v] = True
                    serial[v] += 1
                    src_flit[v] = rng.getrandbits(flit_bits - 24) << 24 | v << 20 | serial[v]
                pins.set(dut.flits[v].valid, src_valid[v])
                pins.set(dut.flits[v].payload.as_value(), src_flit[v])
            ret_cred = [o.pending for o in owed]
            pins.set(dut.ret_credits.as_value(), pack_credits(ret_cred, fab))
            pins.set(dut.ret_pending, any(o.nonzero for o in owed))

            # -- Outputs of this cycle ----------------------------------------------------
            ret_take = ctx.get(dut.ret_take)
            taken = [v for v in range(V) if src_valid[v] and ctx.get(dut.flits[v].ready)]
            assert len(taken) <= 1, "two VCs took a flit in one cycle"
            assert not taken or ret_take, "a flit was taken without creating a SEQ flit"
            assert not (taken or ret_take) or (up and not start)

            # The flit on the wire this cycle was chosen last cycle.
            if cyc >= 1:
                bits = ctx.get(dut.phy.payload)
                assert ctx.get(dut.phy.valid)
                assert link_crc_ok(bits, fab), f"bad CRC on the wire at {cyc}"
                f = decode_link_flit(bits, fab)
                h1 = hist[cyc - 1]
                assert f.ack == h1["ack_out"], cyc
                nak_expected = cyc >= 2 and hist[cyc - 2]["nak"] and h1["up"]
                assert f.nak == nak_expected, f"NAK at {cyc}: {f.nak}, expected {nak_expected}"
                stats["naks_out"] += f.nak
                if not h1["up"]:
                    assert f.kind == INIT, cyc
                    assert f.seq == int(h1["init_seen"]), cyc
                    assert not f.has_flit and not any(f.credits), cyc
                    stats["init"] += 1
                elif f.kind == IDLE:
                    assert not f.has_flit and not any(f.credits), cyc
                    stats["idle"] += 1
                else:
                    assert f.kind == SEQ, cyc
                    # Consecutive, or restarting at the head (oldest unacknowledged).
                    head = head_hist.get(cyc - 2, 0) % M
                    if f.seq != (last_seq + 1) % M:
                        assert f.seq == head, (
                            f"cycle {cyc}: seq {f.seq} after {last_seq}, head {head}"
                        )
                        stats["go_back"] += 1
                    if replay_due is not None and cyc > replay_due:
                        # The first SEQ flit after an ACK timeout replays the oldest one.
                        assert f.seq == head, f"cycle {cyc}: no replay after the timeout"
                        replay_due = None
                    last_seq = f.seq
                    n = len(created)
                    abs_seq = n - 1 - (n - 1 - f.seq) % M
                    assert head_hist.get(cyc - 2, 0) <= abs_seq < n, (
                        f"cycle {cyc}: seq {f.seq} is acknowledged or was never created"
                    )
                    # A replay is bit-identical to the first transmission, which is what was
                    # created (flit and VC are don't-care in a credit-only flit).
                    body = bits & ~(ack_nak_mask | crc_mask)
                    if abs_seq in first_sent:
                        assert body == first_sent[abs_seq], f"cycle {cyc}: replay of {f.seq}"
                        stats["replayed"] += 1
                    first_sent[abs_seq] = body
                    content = (f.has_flit, f.vc, f.flit, f.credits)
                    if not f.has_flit:
                        content = (0, 0, 0, f.credits)
                    assert content == created[abs_seq], f"cycle {cyc}: seq {f.seq} content"
                    stats["seq"] += 1
                    # The peer receives it (or loses it on the channel).
                    if rng.random() < case.p_loss:
                        if not peer_nak_sent:
                            peer_nak = peer_nak_sent = True
                        stats["lost"] += 1
                    elif abs_seq == peer_expected:
                        peer_expected += 1
                        peer_nak_sent = False
                        if f.has_flit:
                            peer_occ[f.vc] += 1
                            assert peer_occ[f.vc] <= rx_depth, f"VC {f.vc} exceeded its credits"
                            peer_rx[f.vc].append(f.flit)
                    elif abs_seq > peer_expected:
                        if not peer_nak_sent:
                            peer_nak = peer_nak_sent = True
                    else:
                        stats["dup"] += 1

            # -- Bookkeeping of this cycle's inputs --------------------------------------
            if ret is not None and up:
                stats["naks_in"] += ret[2]
                a_n = (ret[1] + 1 - head_abs) % M
                if 1 <= a_n <= len(created) - head_abs:
                    head_abs += a_n
                    progress.append(cyc)
            head_hist[cyc] = head_abs
            if ret_take:
                entry_vc = taken[0] if taken else 0
                entry_flit = src_flit[taken[0]] if taken else 0
                created.append((int(bool(taken)), entry_vc, entry_flit, tuple(ret_cred)))
                stats["credit_only"] += not taken
            for v in taken:
                expect_rx[v].append(src_flit[v])
                src_valid[v] = False
            for v in range(V):
                pop = (
                    up
                    and not start
                    and cyc < total + 150  # credits still freed after the last flits
                    and owed[v].owed < 64
                    and rng.random() < 0.05
                )
                owed[v].step(clear=not up or start, pop=pop, take=ret_take)
            # Timeouts only after ack_timeout cycles without ACK progress.
            timeouts = ctx.get(dut.timeouts)
            if timeouts != prev_timeouts:
                assert timeouts == prev_timeouts + 1
                # Seen now, so the timer hit ack_timeout last cycle: no progress in the
                # ack_timeout cycles before that.
                last = max(c for c in progress if c < cyc - 1)
                assert last <= cyc - 2 - params.ack_timeout, (cyc, last)
                stats["timeouts"] += 1
                prev_timeouts = timeouts
                replay_due = cyc
            # The peer drains its buffers and answers (delay 1..6, some answers lost).
            if up and not start:
                for v in range(V):
                    if peer_occ[v] and rng.random() < 0.3:
                        peer_occ[v] -= 1
                        peer_owed[v] += 1
                if cyc not in silent and rng.random() < 0.5:
                    cred = [min(c, cmax) for c in peer_owed]
                    lat = rng.randint(1, 6)
                    due = max(cyc + lat, returns[-1][0] + 1 if returns else 0)
                    if any(cred) or rng.random() > 0.1:
                        peer_owed = [a - b for a, b in zip(peer_owed, cred, strict=True)]
                        returns.append((due, (peer_expected - 1) % M, peer_nak, cred))
                        peer_nak = False
            await ctx.tick()
            cyc += 1
            done = (
                draining
                and not any(src_valid)
                and peer_expected == len(created) == head_abs
                and not any(peer_occ)
                and not any(peer_owed)
                and not returns
                and not any(o.nonzero for o in owed)
            )
            if done:
                break
            assert cyc < total + 1500, "watchdog: the transmitter did not drain"

        assert peer_rx == expect_rx, "per-VC flits lost, duplicated or reordered"
        assert ctx.get(dut.credit_overflow) == 0
        assert ctx.get(dut.data_flits) == sum(serial), "data_flits counter"
        assert ctx.get(dut.replays) >= stats["naks_in"] > 0
        stats["cycles"] = cyc
        stats["lost_at_restart"] = sum(serial) - sum(map(len, expect_rx))

    simulate(dut, bench, name=f"tx_{case.seed}")
    print(dict(stats))
    for what in (
        "init",
        "idle",
        "seq",
        "go_back",
        "timeouts",
        "naks_out",
        "lost",
        "dup",
        "credit_only",
    ):
        assert stats[what] > 0, f"never exercised: {what}"


# --------------------------------------------------------------------------------------------
# Parameters


def test_link_params_validated() -> None:
    """Each bad LinkParams field is refused with its name and value."""
    with pytest.raises(ValueError, match=r"replay_depth must be a power of two >= 2, not 24"):
        LinkParams(replay_depth=24)
    with pytest.raises(ValueError, match=r"replay_depth 256 must be at most half"):
        LinkParams(replay_depth=256)
    with pytest.raises(ValueError, match=r"rx_depth must be 2\.\.4096, not 1"):
        LinkParams(rx_depth=1)
    with pytest.raises(ValueError, match=r"ack_timeout must be at least 16 cycles, not 8"):
        LinkParams(ack_timeout=8)
    with pytest.raises(ValueError, match=r"credit_delay must be 1\.\.255, not 0"):
        LinkParams(credit_delay=0)
    with pytest.raises(ValueError, match=r"registered_crc must be True or False, not 1"):
        LinkParams(registered_crc=1)
    assert LinkParams(registered_crc=True).registered_crc


# --------------------------------------------------------------------------------------------
# Link receiver


RX_COUNTERS = ("crc_errors", "seq_gaps", "duplicates", "accepted", "overflows")


def run_rx(
    params: LinkParams,
    next_input: Callable[[int, LinkRxModel, list], tuple[int | None, bool, bool, list[bool]]],
    *,
    cycles: int,
    name: str,
) -> tuple[LinkRxModel, list]:
    """Drive a :class:`LinkRx` and its model side by side, comparing every output.

    ``next_input(cycle, model, log)`` returns ``(bits or None, up, start, ready per VC)``
    for the cycle; ``log`` collects ``(cycle, RxEvent)`` for every flit checked. After
    ``cycles`` the receive buffers are drained with ``ready`` high. With
    ``params.registered_crc`` the receiver acts on a flit one cycle later: the model gets it
    one cycle later, as from a channel one cycle longer.
    """
    fab = params.fabric
    V = fab.vcs
    dut = LinkRx(params)
    model = LinkRxModel(fab, params.rx_depth)
    log: list = []
    queues: list[deque] = [deque() for _ in range(V)]
    latency = 2 if params.registered_crc else 1

    async def bench(ctx):
        pins = Pins(ctx)
        presented: deque = deque([None] * latency)  # flits of the last `latency` cycles
        cyc = 0
        while True:
            if cyc < cycles:
                bits, up, start, ready = next_input(cyc, model, log)
            else:
                bits, up, start, ready = None, True, False, [True] * V
            pins.set(dut.phy.valid, bits is not None)
            pins.set(dut.phy.payload, bits or 0)
            pins.set(dut.up, up)
            pins.set(dut.start, start)
            for v in range(V):
                pins.set(dut.flits[v].ready, ready[v])
            where = f"cycle {cyc}"
            # State before this cycle's flit: ACK, drained, counters.
            assert ctx.get(dut.ack_out) == model.ack_out, where
            assert ctx.get(dut.drained) == model.drained, where
            for n in RX_COUNTERS:
                assert ctx.get(getattr(dut, n)) == model.counters[n], f"{where}: {n}"
            # The flit presented `latency` cycles ago is checked in this one.
            prev_bits = presented.popleft()
            ev = model.receive(prev_bits, up=up, start=start)
            if prev_bits is not None:
                log.append((cyc, ev))
            assert ctx.get(dut.nak_req) == ev.nak_req, f"{where}: nak_req, {ev}"
            assert ctx.get(dut.got_init) == ev.got_init, where
            assert ctx.get(dut.got_other) == ev.got_other, where
            if ev.got_init:
                assert ctx.get(dut.got_init_seen) == ev.got_init_seen, where
            assert ctx.get(dut.peer_ack_valid) == ev.peer_ack_valid, f"{where}: {ev}"
            if ev.peer_ack_valid:
                assert ctx.get(dut.peer_ack) == ev.peer_ack, where
                assert ctx.get(dut.peer_nak) == ev.peer_nak, where
            assert ctx.get(dut.peer_credits_valid) == (ev.peer_credits is not None), where
            if ev.peer_credits is not None:
                got = tuple(
                    ctx.get(dut.peer_credits.as_value()) >> (i * fab.credit_bits)
                    & ((1 << fab.credit_bits) - 1)
                    for i in range(V)
                )
                assert got == ev.peer_credits, where
            if ev.deliver is not None:
                queues[ev.deliver[0]].append(ev.deliver[1])
            popped = ctx.get(dut.popped)
            for v in range(V):
                valid = ctx.get(dut.flits[v].valid)
                take = valid and ready[v]
                assert (popped >> v & 1) == take, f"{where}: popped[{v}]"
                if take:
                    assert queues[v], f"{where}: VC {v} delivered a flit nobody accepted"
                    want = queues[v].popleft()
                    assert ctx.get(dut.flits[v].payload.as_value()) == want, where
                    model.pop(v)
            presented.append(bits)
            await ctx.tick()
            cyc += 1
            if cyc > cycles + latency and not any(queues):
                break
            assert cyc < cycles + 100 + 4 * params.rx_depth, "watchdog: buffers not drained"
        for n in RX_COUNTERS:
            assert ctx.get(getattr(dut, n)) == model.counters[n], n

    simulate(dut, bench, name=name)
    return model, log


def seq_flit(fab: FabricParams, seq: int, *, vc: int = 0, flit: int | None = 0, **kw) -> int:
    """A good SEQ link flit (``flit=None``: credit-only)."""
    return encode_link_flit(
        LinkFields(kind=SEQ, seq=seq, has_flit=flit is not None, vc=vc, flit=flit or 0, **kw),
        fab,
    )


def test_link_rx_hand_built() -> None:
    """Hand-built sequence with the expected outcome of each flit spelled out."""
    params = LinkParams(replay_depth=16, rx_depth=4, ack_timeout=64)
    fab = params.fabric
    V = fab.vcs
    good = seq_flit(fab, 2, vc=1, flit=0x22)
    bad = good ^ 1 << 40
    reserved = encode_link_flit(LinkFields(kind=3, seq=5), fab)
    script = [
        # (bits, up, start, expected what, expected nak_req)
        (encode_link_flit(LinkFields(kind=INIT, seq=0), fab), False, False, "init", False),
        (seq_flit(fab, 0, vc=0, flit=0x10), False, False, "ignored", False),
        (encode_link_flit(LinkFields(kind=INIT, seq=1), fab), False, True, "init", False),
        (
            seq_flit(fab, 0, vc=0, flit=0x10, ack=7, credits=(1, 2, 3, 4)),
            True,
            False,
            "accepted",
            False,
        ),
        (seq_flit(fab, 1, vc=3, flit=None, credits=(0, 0, 15, 0)), True, False, "accepted", False),
        (seq_flit(fab, 3, vc=1, flit=0x33), True, False, "gap", True),
        (seq_flit(fab, 4, vc=1, flit=0x44), True, False, "gap", False),  # one NAK per gap
        (bad, True, False, "crc", False),
        (good, True, False, "accepted", False),
        (good, True, False, "duplicate", False),
        (bad, True, False, "crc", True),  # re-armed by the accepted flit
        (reserved, True, False, "crc", False),
        (encode_link_flit(LinkFields(kind=IDLE, ack=9, nak=1), fab), True, False, "idle", False),
        (seq_flit(fab, 3, vc=2, flit=0x30), True, False, "accepted", False),
        *[
            (seq_flit(fab, 4 + i, vc=2, flit=0x40 + i), True, False, "accepted", False)
            for i in range(3)
        ],
        (seq_flit(fab, 7, vc=2, flit=0x47), True, False, "overflow", True),  # VC 2 is full
        (seq_flit(fab, 7, vc=0, flit=0x70), True, False, "accepted", False),
        (seq_flit(fab, 8 + 128, vc=0, flit=0x71), True, False, "duplicate", False),
        (seq_flit(fab, 8 + 127, vc=0, flit=0x71), True, False, "gap", True),
    ]

    def next_input(cyc, model, log):
        if cyc < len(script):
            bits, up, start, *_ = script[cyc]
            return bits, up, start, [v != 2 and cyc > 12 for v in range(V)]
        return None, True, False, [False] * V

    model, log = run_rx(params, next_input, cycles=len(script) + 2, name="rx_hand")
    assert [ev.what for _, ev in log] == [s[3] for s in script]
    assert [ev.nak_req for _, ev in log] == [s[4] for s in script]
    delivered = [ev.deliver for _, ev in log if ev.deliver]
    assert delivered == [
        (0, 0x10),
        (1, 0x22),
        (2, 0x30),
        (2, 0x40),
        (2, 0x41),
        (2, 0x42),
        (0, 0x70),
    ]
    assert model.counters == dict(crc_errors=3, seq_gaps=3, duplicates=2, accepted=8, overflows=1)
    assert log[3][1].peer_credits == (1, 2, 3, 4) and log[3][1].peer_ack == 7
    assert log[12][1].peer_ack == 9 and log[12][1].peer_nak


@pytest.mark.parametrize(
    "seq_bits,rx_depth,seed,registered_crc",
    [(8, 8, 1, False), (4, 3, 2, False), (6, 16, 3, False), (5, 2, 4, False), (8, 8, 5, True),
     (5, 2, 6, True)],
    ids=["s8", "s4", "s6", "s5-depth2", "s8-registered_crc", "s5-depth2-registered_crc"],
)  # fmt: skip
def test_link_rx_random(seq_bits: int, rx_depth: int, seed: int, registered_crc: bool) -> None:
    """A sloppy go-back-N peer: gaps, duplicates, bad CRCs, INIT/IDLE, credit violations."""
    rng = make_rng(seed)
    fab = FabricParams(seq_bits=seq_bits)
    params = LinkParams(
        fabric=fab,
        replay_depth=(1 << seq_bits) // 2,
        rx_depth=rx_depth,
        ack_timeout=64,
        registered_crc=registered_crc,
    )
    V, M = fab.vcs, 1 << seq_bits
    flit_bits = flit_layout(fab).size
    state = dict(tx_seq=0, go_back_at=-1, p_ready=0.5, down_until=-1)

    def next_input(cyc, model, log):
        if cyc % 150 == 0:
            state["p_ready"] = (0.5, 0.0, 1.0, 0.05)[cyc // 150 % 4]  # 0.0: fill to overflow
        ready = [rng.random() < state["p_ready"] for _ in range(V)]
        # Down for a while now and then; the restart pulse comes while still down.
        if cyc % 400 == 399:
            state["down_until"] = cyc + rng.randint(3, 20)
        up = cyc > state["down_until"]
        start = cyc == state["down_until"] or cyc == 0
        if start:
            state["tx_seq"] = 0
        # The peer goes back to the receiver's expected number a while after a NAK.
        if log and log[-1][1].nak_req and state["go_back_at"] < cyc:
            state["go_back_at"] = cyc + rng.randint(1, 8)
        if cyc == state["go_back_at"]:
            state["tx_seq"] = model.expected
        r = rng.random()
        if r < 0.1:
            return None, up, start, ready
        fields = dict(ack=rng.randrange(M), nak=int(rng.random() < 0.1))
        if r < 0.13:
            lf = LinkFields(kind=INIT, seq=rng.randrange(2), **fields)
        elif r < 0.18:
            lf = LinkFields(kind=IDLE, **fields)
        else:
            seq = state["tx_seq"]
            if r < 0.23:
                seq = (seq + rng.randint(-3, 3)) % M
            elif r < 0.25:
                seq = rng.randrange(M)
            else:
                state["tx_seq"] = (seq + 1) % M
            has = rng.random() < 0.75
            lf = LinkFields(
                kind=SEQ if r < 0.995 else 3,
                seq=seq,
                has_flit=int(has),
                vc=rng.randrange(V) if has else 0,
                flit=rng.getrandbits(flit_bits) if has else 0,
                credits=tuple(rng.randrange(1 << fab.credit_bits) for _ in range(V)),
                **fields,
            )
        bits = encode_link_flit(lf, fab)
        if rng.random() < 0.05:
            bits ^= 1 << rng.randrange(params.link_bits)  # a bit error, CRC field included
        return bits, up, start, ready

    model, log = run_rx(params, next_input, cycles=2000, name=f"rx_{seed}")
    seen = Counter(ev.what for _, ev in log)
    print(dict(seen), model.counters)
    for what in ("accepted", "gap", "duplicate", "crc", "overflow", "init", "idle", "ignored"):
        assert seen[what] > 0, f"never exercised: {what}"
    assert sum(ev.nak_req for _, ev in log) > 10


# --------------------------------------------------------------------------------------------
# Link training


def run_training(steps: list[tuple[dict, dict]], name: str) -> None:
    """Drive :class:`LinkTraining` with ``(inputs, expected outputs)`` per cycle.

    Inputs not named are 0 (``drained`` defaults to 1); expected outputs are checked after the
    inputs settle (``up``/``init_seen``/``downs`` are registers, ``start`` is combinational).
    """
    dut = LinkTraining()

    async def bench(ctx):
        for cyc, (inputs, expect) in enumerate(steps):
            values = dict(got_init=0, got_init_seen=0, got_other=0, drained=1) | inputs
            for k, v in values.items():
                ctx.set(getattr(dut, k), v)
            for k, v in expect.items():
                assert ctx.get(getattr(dut, k)) == v, f"cycle {cyc}: {k} != {v}"
            await ctx.tick()

    simulate(dut, bench, name=name)


INIT0 = dict(got_init=1, got_init_seen=0)
INIT1 = dict(got_init=1, got_init_seen=1)
OTHER = dict(got_other=1)
DOWN = dict(up=0, start=0)


def test_training_both_start_together() -> None:
    """Both sides send INIT(0), see each other, send INIT(1), go up on it."""
    run_training(
        [
            ({}, DOWN | dict(init_seen=0)),
            (INIT0, DOWN | dict(init_seen=0)),  # INIT(0) seen: no start yet
            (INIT0, DOWN | dict(init_seen=1)),
            ({}, DOWN | dict(init_seen=1)),
            (INIT1, dict(up=0, start=1)),  # peer has seen us too: go
            (INIT1, dict(up=1, start=0, downs=0)),  # late INIT(1) keeps the link up
            (OTHER, dict(up=1, start=0)),
        ],
        "training_together",
    )


def test_training_peer_up_first() -> None:
    """A side that has seen its peer's INIT goes up on its first IDLE/SEQ flit."""
    run_training(
        [
            (OTHER, DOWN | dict(init_seen=0)),  # traffic before any INIT: ignored
            (OTHER, DOWN),
            (INIT0, DOWN),
            (OTHER, dict(up=0, start=1, init_seen=1)),
            ({}, dict(up=1, start=0)),
        ],
        "training_peer_first",
    )


def test_training_drained_gating() -> None:
    """No start while a receive buffer still holds flits."""
    run_training(
        [
            (INIT1 | dict(drained=0), DOWN),
            (INIT1 | dict(drained=0), DOWN | dict(init_seen=1)),
            (OTHER | dict(drained=0), DOWN),
            (OTHER | dict(drained=1), dict(up=0, start=1)),
            ({}, dict(up=1, start=0)),
        ],
        "training_drained",
    )


def test_training_peer_reset_while_up() -> None:
    """An up side that gets INIT(0) goes down, counts it, and comes back up."""
    run_training(
        [
            (INIT1, dict(start=1)),
            (OTHER, dict(up=1)),
            (INIT1, dict(up=1, start=0)),  # INIT with the seen bit: not a reset
            (INIT0, dict(up=1, start=0, downs=0)),  # the peer reset
            (INIT0, DOWN | dict(downs=1, init_seen=1)),  # stays down on INIT(0)
            (OTHER | dict(drained=0), DOWN),  # not drained yet
            (INIT1, dict(up=0, start=1)),
            (INIT0, dict(up=1, start=0, downs=1)),  # a second peer reset
            (INIT1, DOWN | dict(downs=2, init_seen=1, start=1)),  # already seen: go at once
            ({}, dict(up=1, downs=2)),
        ],
        "training_reset",
    )


# --------------------------------------------------------------------------------------------
# Link layer pair over lossy channels


class LinkPair(Elaboratable):
    """Two link layers; the channels between them are modelled in Python.

    ``rst_b`` resets side ``b`` alone (a peer reset while the link is up).
    """

    def __init__(self, params: LinkParams) -> None:
        self.a = LinkLayer(params)
        self.b = LinkLayer(params)
        self.rst_b = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.a = self.a
        m.submodules.b = ResetInserter(self.rst_b)(self.b)
        return m


class LossyChannel:
    """A delay line of ``latency`` cycles that drops flits and flips single bits."""

    def __init__(self, rng: random.Random, latency: int, width: int, p_flip: float, p_drop: float):
        self.rng, self.width, self.p_flip, self.p_drop = rng, width, p_flip, p_drop
        self.line: deque = deque([None] * latency)
        self.flipped = self.dropped = 0

    def step(self, flit: int | None) -> int | None:
        """One cycle: ``flit`` enters, the flit of ``latency`` cycles ago leaves."""
        if flit is not None:
            r = self.rng.random()
            if r < self.p_drop:
                flit = None
                self.dropped += 1
            elif r < self.p_drop + self.p_flip:
                flit ^= 1 << self.rng.randrange(self.width)
                self.flipped += 1
        self.line.append(flit)
        return self.line.popleft()


@dataclass
class PairCase:
    seed: int
    latency: tuple[int, int]  # a -> b, b -> a
    p_flip: float
    p_drop: float
    flits: int = 40  # per VC and direction
    p_inject: float = 0.5
    p_ready: tuple[float, ...] = (0.3, 0.7, 1.0)
    reset_b: bool = False
    max_cycles: int | None = None  # watchdog; default from the amount of traffic
    registered_crc: bool = False
    registered_select: bool = False


PAIR_PARAMS = LinkParams(replay_depth=32, rx_depth=16, ack_timeout=64)


def run_pair(case: PairCase, name: str) -> Counter:
    """Random per-VC traffic both ways; per-VC scoreboards; returns counters and stats."""
    rng = make_rng(case.seed)
    params = replace(
        PAIR_PARAMS,
        registered_crc=case.registered_crc,
        registered_select=case.registered_select,
    )
    fab = params.fabric
    V = fab.vcs
    flit_bits = flit_layout(fab).size
    dut = LinkPair(params)
    sides = (dut.a, dut.b)
    chans = [
        LossyChannel(rng, case.latency[i], params.link_bits, case.p_flip, case.p_drop)
        for i in range(2)
    ]
    stats: Counter = Counter()

    async def bench(ctx):
        pins = Pins(ctx)
        # Per side s and VC v: flits s sent to the other side, and flits s received.
        sent = [[[] for _ in range(V)] for _ in range(2)]
        got = [[[] for _ in range(V)] for _ in range(2)]
        valid = [[False] * V for _ in range(2)]
        payload = [[0] * V for _ in range(2)]
        ready = [[False] * V for _ in range(2)]
        count = [[0] * V for _ in range(2)]
        p_ready = 1.0
        inject = True
        reset_phase = "none" if not case.reset_b else "traffic"
        watchdog = case.max_cycles or 400 + case.flits * V * 12 * (2 if case.reset_b else 1)
        cyc = 0
        while True:
            if cyc % 100 == 0:
                p_ready = rng.choice(case.p_ready)
            # Reset case: traffic, quiesce, reset b, wait for the link, traffic again.
            if reset_phase == "traffic" and min(map(min, count)) >= case.flits // 2:
                reset_phase, inject = "quiesce", False
            delivered = got[0] == sent[1] and got[1] == sent[0]
            if reset_phase == "quiesce" and delivered and not any(map(any, valid)):
                reset_phase = "reset"
                pins.set(dut.rst_b, 1)
                stats["reset_at"] = cyc
            elif reset_phase == "reset":
                pins.set(dut.rst_b, 0)
                reset_phase = "down"
            elif reset_phase == "down" and ctx.get(dut.a.up) and ctx.get(dut.b.up):
                stats["relink_cycles"] = cyc - stats["reset_at"]
                reset_phase, inject = "again", True
            for s, side in enumerate(sides):
                for v in range(V):
                    idle = not valid[s][v] and inject and count[s][v] < case.flits
                    if idle and rng.random() < case.p_inject:
                        count[s][v] += 1
                        valid[s][v] = True
                        serial = count[s][v] | v << 12 | s << 15
                        payload[s][v] = rng.getrandbits(flit_bits - 16) << 16 | serial
                    pins.set(side.tx[v].valid, valid[s][v])
                    pins.set(side.tx[v].payload.as_value(), payload[s][v])
                    ready[s][v] = rng.random() < p_ready
                    pins.set(side.rx[v].ready, ready[s][v])
            # Channels: a -> b and b -> a.
            for s, side in enumerate(sides):
                other = sides[1 - s]
                flit = ctx.get(side.phy_tx.data) if ctx.get(side.phy_tx.valid) else None
                out = chans[s].step(flit)
                pins.set(other.phy_rx.valid, out is not None)
                if out is not None:
                    pins.set(other.phy_rx.data, out)
            # Handshakes.
            for s, side in enumerate(sides):
                for v in range(V):
                    if valid[s][v] and ctx.get(side.tx[v].ready):
                        sent[s][v].append(payload[s][v])
                        valid[s][v] = False
                    if ready[s][v] and ctx.get(side.rx[v].valid):
                        flit = ctx.get(side.rx[v].payload.as_value())
                        mine = got[s][v]
                        theirs = sent[1 - s][v]
                        assert len(mine) < len(theirs), f"side {s} VC {v}: extra flit at {cyc}"
                        assert flit == theirs[len(mine)], (
                            f"side {s} VC {v}: flit {len(mine)} lost, reordered or corrupted "
                            f"(cycle {cyc})"
                        )
                        mine.append(flit)
            await ctx.tick()
            cyc += 1
            if all(count[s][v] == case.flits for s in range(2) for v in range(V)) and (
                got[0] == sent[1] and got[1] == sent[0] and not any(map(any, valid))
            ):
                break
            assert cyc < watchdog, (
                f"watchdog: {cyc} cycles, delivered "
                f"{[sum(map(len, g)) for g in got]} of {[sum(map(len, x)) for x in sent]}, "
                f"up {ctx.get(dut.a.up)} {ctx.get(dut.b.up)}"
            )
        assert got[1] == sent[0] and got[0] == sent[1]
        assert all(len(x) == case.flits for side in sent for x in side)
        stats["cycles"] = cyc
        for s, side in enumerate(sides):
            assert ctx.get(side.up), f"side {s} is down at the end"
            assert not ctx.get(side.credit_overflow), f"side {s}: credit overflow"
            for n in LINK_COUNTERS:
                stats[f"{n}_{'ab'[s]}"] = ctx.get(getattr(side, n))

    simulate(dut, bench, name=name)
    stats["flipped"] = sum(c.flipped for c in chans)
    stats["dropped"] = sum(c.dropped for c in chans)
    print(dict(stats))
    # No credit violation ever reached a receive buffer; only b's reset takes the link down.
    assert stats["overflows_a"] == stats["overflows_b"] == 0
    assert stats["downs_a"] == int(case.reset_b) and stats["downs_b"] == 0
    return stats


@pytest.mark.parametrize(
    "case",
    [
        PairCase(seed=1, latency=(1, 1), p_flip=0.0, p_drop=0.0),
        PairCase(seed=2, latency=(4, 7), p_flip=0.02, p_drop=0.02),
        PairCase(seed=3, latency=(8, 2), p_flip=0.05, p_drop=0.03, p_inject=0.9),
        PairCase(seed=4, latency=(3, 3), p_flip=0.01, p_drop=0.05, p_ready=(0.05, 1.0)),
        PairCase(seed=7, latency=(4, 2), p_flip=0.03, p_drop=0.02, registered_crc=True),
        # The board's transmitter: choice of VC registered, then written (registered_select).
        PairCase(seed=8, latency=(1, 1), p_flip=0.0, p_drop=0.0, registered_select=True),
        PairCase(
            seed=9,
            latency=(5, 3),
            p_flip=0.03,
            p_drop=0.03,
            p_inject=0.9,
            registered_crc=True,
            registered_select=True,
        ),
        PairCase(
            seed=10,
            latency=(3, 3),
            p_flip=0.01,
            p_drop=0.05,
            p_ready=(0.05, 1.0),
            registered_select=True,
        ),
    ],
    ids=[
        "clean",
        "lossy",
        "lossier",
        "backpressure",
        "lossy_registered_crc",
        "clean_registered_select",
        "lossier_board",
        "backpressure_registered_select",
    ],
)
def test_link_pair(case: PairCase) -> None:
    stats = run_pair(case, f"pair_{case.seed}")
    if case.p_flip or case.p_drop:
        assert stats["replays_a"] + stats["replays_b"] > 0
        assert stats["crc_errors_a"] + stats["crc_errors_b"] > 0 or not case.p_flip
    else:
        assert stats["crc_errors_a"] == stats["crc_errors_b"] == 0


@pytest.mark.parametrize("registered_select", [False, True], ids=["direct", "registered_select"])
@pytest.mark.parametrize("lossy", [False, True], ids=["clean", "lossy"])
def test_link_pair_peer_reset(lossy: bool, registered_select: bool) -> None:
    """Side b resets while the link is up: a goes down once, both retrain, traffic resumes."""
    case = PairCase(
        seed=5 + lossy + 10 * registered_select,
        latency=(5, 3),
        p_flip=0.02 * lossy,
        p_drop=0.02 * lossy,
        reset_b=True,
        registered_select=registered_select,
    )
    stats = run_pair(case, f"pair_reset_{int(lossy)}_{int(registered_select)}")
    assert stats["relink_cycles"] < 100


def accepted_per_window(params: LinkParams, vcs_used: int, cycles: int) -> int:
    """Flits side a's transmitter takes in ``cycles`` cycles once the link is up, with
    ``vcs_used`` VCs always offering a flit, a clean one-cycle channel and side b always
    ready."""
    dut = LinkPair(params)
    fab = params.fabric
    taken = 0

    async def bench(ctx):
        nonlocal taken
        pins = Pins(ctx)
        for v in range(fab.vcs):
            pins.set(dut.b.rx[v].ready, 1)
            pins.set(dut.a.tx[v].valid, 0)
        chans = [deque([None]), deque([None])]
        cyc = up_at = 0
        while up_at == 0 or cyc < up_at + cycles:
            if up_at == 0 and ctx.get(dut.a.up) and ctx.get(dut.b.up):
                up_at = cyc
                for v in range(vcs_used):
                    pins.set(dut.a.tx[v].valid, 1)
            for s, (side, other) in enumerate(((dut.a, dut.b), (dut.b, dut.a))):
                chans[s].append(ctx.get(side.phy_tx.data) if ctx.get(side.phy_tx.valid) else None)
                out = chans[s].popleft()
                pins.set(other.phy_rx.valid, out is not None)
                if out is not None:
                    pins.set(other.phy_rx.data, out)
            if up_at:
                taken += sum(ctx.get(dut.a.tx[v].ready) for v in range(vcs_used))
            await ctx.tick()
            cyc += 1
            assert cyc < 1000, "the link did not come up"

    simulate(dut, bench, name=f"throughput_{int(params.registered_select)}_{vcs_used}")
    return taken


@pytest.mark.parametrize("vcs_used", [1, 3])
def test_link_registered_select_throughput(vcs_used: int) -> None:
    """With ``registered_select`` the transmitter still takes one flit per cycle, on one VC
    (the VC being written is chosen again) or spread over several: within a few flits of the
    direct transmitter, whose rate the receive buffers' credits limit."""
    params = replace(PAIR_PARAMS, rx_depth=64)
    cycles = 200
    direct = accepted_per_window(params, vcs_used, cycles)
    registered = accepted_per_window(replace(params, registered_select=True), vcs_used, cycles)
    print({"direct": direct, "registered": registered})
    assert direct >= cycles - 4
    assert registered >= direct - 2
