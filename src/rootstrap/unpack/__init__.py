"""The one way a tar stream becomes a tree: a dirfd-based extractor that never leaves its root.

Used by the bootstrap (.deb data members), the tree cache and the store's import-tar.
"""
