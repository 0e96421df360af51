"""The API's routes, one router per concern; `stopper.api.app` assembles them in this order:
health, reports, cases, operations, orders, callbacks (the order of the OpenAPI paths)."""
