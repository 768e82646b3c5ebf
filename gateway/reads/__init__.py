"""The read path's pure building blocks: which request targets reach the index, how its pages are rewritten,
PEP 691 JSON, and the cache of rendered pages. Nothing here does I/O; the handlers wire it to the network.
"""
