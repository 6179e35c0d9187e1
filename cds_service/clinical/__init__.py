"""The pure clinical core: facts, assessment, regimen. No web framework, no HTTP client."""
