"""Baselines: the least a server must do for the same load, to compare the hub against."""
