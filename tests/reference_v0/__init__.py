"""dnmf's plain NMF as it was before NMF and NMFD became one learner, frozen.

A verbatim copy of ``dnmf/kernels.py``, ``dnmf/learn.py`` and ``dnmf/init.py``
at commit c808623 (imports pointed here), kept as the reference that the single
learner must reproduce bit for bit at ``lags = 1`` (tests/test_lags1_bitwise.py)
and that its ``lags = 1`` kernel must match in speed (benchmarks/kernel_lags1.py).
Do not edit it to follow the library: it is the past the library is held to.
Only the in-process path is used (``MemoryBackend``, ``learn``); the numba passes
are dnmf's own (``dnmf._fused``), themselves checked bitwise against NumPy.
"""
