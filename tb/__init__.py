"""cocotb testbenches."""
