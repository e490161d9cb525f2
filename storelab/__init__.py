"""storelab: study deduplication in content-addressed stores.

>>> import storelab
>>> storelab.__version__
'0.1.0'
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
