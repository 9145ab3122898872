// Injection and capture queues of the switch bench's bulk ports under Verilator (bench
// infrastructure only; see unifab_bulk_port.v).
//
// Python (tb/switch_bench.py, through ctypes in the same process) appends whole batches of
// entries to a port's injection queue and takes every captured entry at once; the Verilog
// injector takes one entry per call and the capture side appends one per flit, through DPI.
// Nothing crosses VPI per flit, so a bench period costs a handful of calls whatever the load.
//
// An entry is up to 256 bits (8 DPI words, LSB first); Python sees `entry_bytes` bytes of it.

#include <array>
#include <cstdint>
#include <cstring>
#include <deque>
#include <vector>

#include "svdpi.h"

namespace {

constexpr int kWords = 8;
constexpr int kMaxBytes = 4 * kWords;
using Entry = std::array<uint32_t, kWords>;

struct Port {
    std::deque<Entry> inject;
    std::deque<Entry> captured;
};

std::vector<Port>& ports() {
    static std::vector<Port> all;
    return all;
}

Port& port(int p) {
    auto& all = ports();
    if (p >= static_cast<int>(all.size())) all.resize(p + 1);
    return all[p];
}

}  // namespace

extern "C" {

// ---- Python side (ctypes) -------------------------------------------------------------------

// Forget every queued and captured entry (a new bench run in the same process).
void unifab_bulk_reset() { ports().clear(); }

// Append `n` entries of `entry_bytes` bytes each (little-endian) to port `p`'s injection queue.
// Returns 0, or -1 when `entry_bytes` is larger than an entry.
int unifab_bulk_push(int p, const uint8_t* rows, int n, int entry_bytes) {
    if (entry_bytes < 0 || entry_bytes > kMaxBytes) return -1;
    auto& q = port(p).inject;
    for (int i = 0; i < n; ++i) {
        Entry e{};
        std::memcpy(e.data(), rows + static_cast<size_t>(i) * entry_bytes, entry_bytes);
        q.push_back(e);
    }
    return 0;
}

// Entries port `p` has captured and Python has not taken yet.
int unifab_bulk_captured_count(int p) { return static_cast<int>(port(p).captured.size()); }

// Move up to `max` captured entries of port `p` into `out` (`entry_bytes` bytes each), oldest
// first. Returns how many, or -1 when `entry_bytes` is larger than an entry.
int unifab_bulk_pull(int p, uint8_t* out, int max, int entry_bytes) {
    if (entry_bytes < 0 || entry_bytes > kMaxBytes) return -1;
    auto& q = port(p).captured;
    int n = 0;
    while (n < max && !q.empty()) {
        std::memcpy(out + static_cast<size_t>(n) * entry_bytes, q.front().data(), entry_bytes);
        q.pop_front();
        ++n;
    }
    return n;
}

// ---- Verilog side (DPI) ---------------------------------------------------------------------

// The next entry for port `p`'s injector: 1 and the entry, or 0 when the queue is empty.
int unifab_bulk_next(int p, svBitVecVal* entry) {
    auto& q = port(p).inject;
    if (q.empty()) return 0;
    std::memcpy(entry, q.front().data(), sizeof(Entry));
    q.pop_front();
    return 1;
}

// A flit left the switch at port `p`, stamped into `entry`.
void unifab_bulk_captured(int p, const svBitVecVal* entry) {
    Entry e;
    std::memcpy(e.data(), entry, sizeof(Entry));
    port(p).captured.push_back(e);
}

}  // extern "C"
