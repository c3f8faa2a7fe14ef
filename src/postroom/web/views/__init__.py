"""The pages of the web UI, one module per area; ``ROUTES`` of each is registered by the router."""
