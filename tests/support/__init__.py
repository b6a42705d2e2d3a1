"""The test bed every tier shares: sandbox devices, the fleet's hosts, hostile peers and
payloads, and the command run as an operator runs it. Imported as `support.<module>`
(pytest puts tests/ on the import path: pyproject.toml)."""
