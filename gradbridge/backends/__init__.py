"""Framework adapters: one per framework, each implementing gradbridge.core.backend.Backend."""
