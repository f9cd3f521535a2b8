"""Security master: exchange listings as an SCD2 history, alerts and the tracked universe."""
