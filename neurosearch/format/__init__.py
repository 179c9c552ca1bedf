"""The index directory on disk: atomic writes, the manifest (sha256 per file), verified ``.npy`` reads.

Standard library only at import time: ``find`` reads an index through this package.
"""
