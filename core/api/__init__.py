"""The HTTP side: the REST API, its schema and OpenAPI document, health and Prometheus."""
