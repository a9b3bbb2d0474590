"""Code that the web, worker, beat and media processes all import."""
