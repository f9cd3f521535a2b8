"""Plumbing every package may import: the lowest layer (standard library and structlog only;
httpx is imported lazily where alerts are delivered).

    config   the config file: reading, schema check, typed getters, URL and path checks
    errors   the exception tree
    locks    the one file lock (flock) of every program
    logs     structlog set-up, once per entry point
    retry    the retry policy: backoff, Retry-After, which HTTP statuses are worth a retry
    alerts   the fleet's one alert service (Slack, Telegram, PagerDuty)
    layout   where files live on disk: stream directories, file names, twins, "closed"
"""
