"""The describe task: describe an object with the requested properties, not merely echo the request's words."""
