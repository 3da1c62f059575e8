"""REALM example generation: masked queries, live retrieval, featurized examples."""
