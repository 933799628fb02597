"""The bootstrap pipeline: recipe to configured tree to image (bootstrap.py is the phase list).

Built on archive (the verified Release and indexes), resolve (the plan), unpack (the safe
extractor) and runner (dpkg and maintainer scripts inside the new root); hands the tree to store.
"""
