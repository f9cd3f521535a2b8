"""S3 sync: deliver every closed data file and QA report to S3, verified, then free local disk.

``python -m ops.sync run|schedule|lifecycle`` (see ``__main__``; ``schedule`` is an alias of
``python -m ops.periodic sync``, the one periodic loop). Modules: ``settings`` (the ``[sync]``
table), ``scan`` (closed files on disk), ``ledger`` (SQLite record of deliveries), ``s3``
(boto3 client, checksummed uploads), ``run`` (one run), ``progress`` (TTY bar / progress log
lines).
"""
