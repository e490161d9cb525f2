"""Reusable test suites and strategies for storelab's seams (needs the ``test`` extras).

- :mod:`storelab.testing.trees`: trees on disk from a spec, and Hypothesis strategies of them;
- :mod:`storelab.testing.stores`: :class:`~storelab.testing.stores.StoreTests`, the conformance
  suite every blob store backend passes, and a Hypothesis state machine comparing a store with
  a dict;
- :mod:`storelab.testing.nars`: random well-formed NARs and mutations of them (the NAR
  reader's property tests and ``benchmarks/fuzz_nar.py``);
- :mod:`storelab.testing.datasets`: :class:`~storelab.testing.datasets.DatasetStorageTests`,
  the suite every dataset storage (folder, object store) passes.

A backend's test module subclasses a suite and says how to build the thing under test and how
to look underneath it (zarr's ``StoreTests`` model)::

    class TestFileStore(StoreTests):
        def make_store(self, tmp_path, request):
            return SnixStore.open(f"file://{tmp_path}/store")
"""
