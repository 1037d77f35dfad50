"""Compression search spaces: channel pruning (torch-pruning dependency graph), fine-grained
sparsity, mixed precision, joint, architecture. Registered under ``automc.search_spaces``."""
