"""The App's processes: the webhook server, the workers and the job queue that joins them."""
