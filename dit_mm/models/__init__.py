"""dit_mm's models; importing this package registers them in every library."""
