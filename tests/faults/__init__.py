"""Fault-injection tests: killed jobs, damaged files, bad input, a full disk."""
