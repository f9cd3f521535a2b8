"""S3 sync: deliver every closed data file and QA report to S3, verified, then free local disk.

``python -m ops.sync run|schedule|lifecycle`` (see ``__main__``). Modules: ``settings`` (the
``[sync]`` table), ``scan`` (closed files on disk), ``ledger`` (SQLite record of deliveries),
``s3`` (boto3 client, checksummed uploads), ``run`` (one run, the lock, the schedule loop),
``progress`` (TTY bar / progress log lines).
"""
