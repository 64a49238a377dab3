"""`make bench`: the gateway's durable ingest and delivery measured against a same-run floor."""
