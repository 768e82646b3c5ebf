"""The read path: which request targets reach the index, how its pages are rewritten, PEP 691 JSON and the
cache of rendered pages (pure modules), and `handler`, the one module that wires them to the network.
"""
