// Bench-side bulk injector and capture for one fabric port (testbench infrastructure only).
//
// Written in Verilog rather than Amaranth because of what simulators make of it: the wide
// batch registers here are written one entry (E bits) at a time with part-selects, so a
// simulator does O(E) work per flit; the equivalent Amaranth next-state logic copies the whole
// K*E-bit register every cycle.
//
// Entries are injected in order, each once `now` has reached its release cycle and the port
// holds a credit for its VC; every flit leaving the switch is stamped with `now` and captured.
// Entry: [31:0] cycle (release / arrival), [39:32] VC, [40] head, [41] tail,
// [48+PB-1:48] payload. Credits go back to the switch unless a 32-bit xorshift draw is below
// `bp_thresh` (random back-pressure).
//
// Where entries come from and go to depends on the simulator:
// * Verilator: queues in C++ (unifab_bulk.cpp) through DPI. Python fills a port's injection
//   queue and empties its capture queue in bursts, with ctypes, in the simulator's process.
// * Others (Icarus): wide registers through VPI. `inj_take` loads a batch of `inj_count`
//   entries into the free half of two; capture goes into bank `cap_bank` (the bench flips banks
//   every K cycles, reads the one just filled in place and clears it with `clear_other`).
module unifab_bulk_port #(
    parameter K = 256,
    parameter E = 192,
    parameter PB = 144,
    parameter VCB = 3,
    parameter VCS = 4,
    parameter DEPTH = 4,
    parameter PORT = 0,
    parameter SEED = 32'h1234567
) (
    input  wire             clk,
    input  wire             rst,
    input  wire [31:0]      now,
    input  wire [K*E-1:0]   inj_data,
    input  wire [15:0]      inj_count,
    input  wire             inj_take,
    output wire             inj_ready,
    output wire             inj_busy,
    output reg              in_valid,
    output reg  [VCB-1:0]   in_vc,
    output reg              in_head,
    output reg              in_tail,
    output reg  [PB-1:0]    in_payload,
    input  wire [VCS-1:0]   in_credit,
    input  wire             out_valid,
    input  wire [VCB-1:0]   out_vc,
    input  wire             out_head,
    input  wire             out_tail,
    input  wire [PB-1:0]    out_payload,
    output wire [VCS-1:0]   out_credit,
    input  wire             cap_bank,
    input  wire             clear_other,
    input  wire [31:0]      bp_thresh,
    output reg  [15:0]      cap_count0,
    output reg  [15:0]      cap_count1
);
    // ---- injection: the entry at the head of the queue, sent when due and credited -------
    wire [E-1:0] entry;
    wire live;
    reg [15:0] credits [0:VCS-1];
    integer v;
    wire [31:0] rel_cycle = entry[31:0];
    wire [VCB-1:0] vc = entry[32 +: VCB];
    wire [31:0] since = now - rel_cycle;
    wire due = !since[31];
    wire has_credit = credits[vc] != 0;
    wire send = live && due && has_credit;

    always @(posedge clk) begin
        if (rst) begin
            in_valid <= 0;
            for (v = 0; v < VCS; v = v + 1) credits[v] <= DEPTH;
        end else begin
            in_valid <= send;
            in_vc <= vc;
            in_head <= entry[40];
            in_tail <= entry[41];
            in_payload <= entry[48 +: PB];
            for (v = 0; v < VCS; v = v + 1)
                credits[v] <= credits[v] - ((send && vc == v) ? 1 : 0) + (in_credit[v] ? 1 : 0);
        end
    end

    wire [E-1:0] stamped = {{(E - 48 - PB){1'b0}}, out_payload, 6'b0, out_tail, out_head,
                            {(8 - VCB){1'b0}}, out_vc, now};

`ifdef VERILATOR
    // ---- queues in C++ through DPI -------------------------------------------------------
    import "DPI-C" function int unifab_bulk_next(input int port, output bit [255:0] entry);
    import "DPI-C" function void unifab_bulk_captured(input int port, input bit [255:0] entry);
    reg [255:0] cur;
    reg cur_valid;
    reg [255:0] fetched;
    integer got;
    assign entry = cur[E-1:0];
    assign live = cur_valid;
    assign inj_ready = 0;
    assign inj_busy = cur_valid;
    always @(posedge clk) begin
        if (rst) begin
            cur_valid <= 0;
        end else if (!cur_valid || send) begin
            got = unifab_bulk_next(PORT, fetched);
            cur_valid <= got != 0;
            cur <= fetched;
        end
        if (!rst && out_valid) unifab_bulk_captured(PORT, {{(256 - E){1'b0}}, stamped});
    end
    always @(posedge clk) begin
        cap_count0 <= 0;
        cap_count1 <= 0;
    end
`else
    // ---- wide registers through VPI --------------------------------------------------------
    reg [K*E-1:0] row0, row1;
    reg [15:0] cnt0, cnt1, idx;
    reg full0, full1, wsel, rsel;
    assign entry = rsel ? row1[idx*E +: E] : row0[idx*E +: E];
    wire cur_full = rsel ? full1 : full0;
    wire [15:0] cur_cnt = rsel ? cnt1 : cnt0;
    assign live = cur_full && (idx < cur_cnt);
    wire done_half = cur_full && ((send && (idx + 1 == cur_cnt)) || (cur_cnt == 0));
    assign inj_ready = wsel ? !full1 : !full0;
    assign inj_busy = full0 || full1;

    always @(posedge clk) begin
        if (rst) begin
            full0 <= 0; full1 <= 0; wsel <= 0; rsel <= 0; idx <= 0;
        end else begin
            if (done_half) begin
                if (rsel) full1 <= 0; else full0 <= 0;
                rsel <= !rsel;
                idx <= 0;
            end else if (send) begin
                idx <= idx + 1;
            end
            if (inj_take) begin
                if (wsel) begin row1 <= inj_data; cnt1 <= inj_count; full1 <= 1; end
                else      begin row0 <= inj_data; cnt0 <= inj_count; full0 <= 1; end
                wsel <= !wsel;
            end
        end
    end

    // The banks are read in place by the bench (hierarchical access), not through ports, one
    // chunk of CH entries per read so that a bench reads only the chunks a period filled.
    // Each entry is stored as EC characters of 7 bits with bit 7 set (LSB first), so a string
    // read moves 7 bits per character and never meets NUL or space, which simulators drop or
    // substitute.
    localparam CH = K < 64 ? K : 64;
    localparam NCH = K / CH;
    localparam EC = (E + 6) / 7;
    reg [8*EC*CH-1:0] cap_bank0 [0:NCH-1];
    reg [8*EC*CH-1:0] cap_bank1 [0:NCH-1];
    wire [7*EC-1:0] stamped_padded = {{(7*EC - E){1'b0}}, stamped};
    wire [8*EC-1:0] stamped_chars;
    genvar c;
    generate
        for (c = 0; c < EC; c = c + 1) begin : to_chars
            assign stamped_chars[8*c +: 8] = {1'b1, stamped_padded[7*c +: 7]};
        end
    endgenerate
    always @(posedge clk) begin
        if (rst) begin
            cap_count0 <= 0; cap_count1 <= 0;
        end else begin
            if (out_valid && !cap_bank) begin
                cap_bank0[cap_count0 / CH][(cap_count0 % CH)*8*EC +: 8*EC] <= stamped_chars;
                cap_count0 <= cap_count0 + 1;
            end
            if (out_valid && cap_bank) begin
                cap_bank1[cap_count1 / CH][(cap_count1 % CH)*8*EC +: 8*EC] <= stamped_chars;
                cap_count1 <= cap_count1 + 1;
            end
            if (clear_other) begin
                if (cap_bank) cap_count0 <= 0; else cap_count1 <= 0;
            end
        end
    end
`endif

    // ---- credits back to the switch, with random back-pressure ---------------------------
    reg [31:0] rng;
    reg [15:0] owed [0:VCS-1];
    wire [31:0] x1 = rng ^ (rng << 13);
    wire [31:0] x2 = x1 ^ (x1 >> 17);
    wire [31:0] x3 = x2 ^ (x2 << 5);
    wire go = rng >= bp_thresh;
    genvar g;
    generate
        for (g = 0; g < VCS; g = g + 1) begin : credit_return
            assign out_credit[g] = go && (owed[g] != 0);
        end
    endgenerate
    always @(posedge clk) begin
        if (rst) begin
            rng <= SEED;
            for (v = 0; v < VCS; v = v + 1) owed[v] <= 0;
        end else begin
            rng <= x3;
            for (v = 0; v < VCS; v = v + 1)
                owed[v] <= owed[v] + ((out_valid && out_vc == v) ? 1 : 0) - (out_credit[v] ? 1 : 0);
        end
    end
endmodule
