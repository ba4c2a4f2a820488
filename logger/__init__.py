"""The logger process: stores job log lines in batches."""
