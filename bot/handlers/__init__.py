"""Job handlers: what the worker does with each kind of job, GitHub I/O at the edges."""
