"""What the runner tells about itself: Prometheus metrics (`metrics`), traces (`tracing`)."""
