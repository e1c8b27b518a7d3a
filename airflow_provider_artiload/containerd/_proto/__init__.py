"""Generated gRPC modules for artiload's own subset of containerd's API (see scripts/generate_protos.py)."""
