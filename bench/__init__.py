"""Squall's benchmark harness (issue 5): a load generator, peers and limits measured in
the same run, results as JSON, plots and ``docs/benchmarks.md``.

Run ``python -m bench --help``. Modules, one concept each:

* ``histogram``: latency histogram (log-linear buckets, mergeable, percentiles). Pure.
* ``loadgen``: worker processes x threads, keep-alive ``http.client`` connections,
  presigned URLs made up front; fixed duration or fixed count; progress once a second.
* ``workloads``: the S3 workloads (4 KiB PUT/GET/HEAD, ListObjectsV2, 64 MiB, multipart,
  mixed) expressed as request plans for ``loadgen``.
* ``systems``: start/stop the systems under test (Squall, Ceph RGW, moto).
* ``ceilings``: the limits (raw loopback socket, LMDB, bare Starlette on uvicorn).
* ``results``: the result document (schema, validation, writing). Pure apart from writing.
* ``plots``, ``report``: PNGs and the tables of ``docs/benchmarks.md``.
"""
