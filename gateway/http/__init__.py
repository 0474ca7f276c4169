"""Everything that knows FastAPI/Starlette. No business logic: routes call services."""
