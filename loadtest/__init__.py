"""Load generators and benchmarks; every loop is bounded and traffic stays on loopback."""
