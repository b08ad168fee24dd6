"""`make bench`: our connector against dlt's rest_api source and a hand-written loop."""
