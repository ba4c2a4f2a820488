"""Tables, API schemas and broker message schemas shared by every smartq process."""
