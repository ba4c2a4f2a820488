"""The scheduler: a pure core (which jobs are ready, where they fit) and a thin loop."""
