"""toolfabric's servers, one package whose folders are the import layers, top to bottom (pyproject.toml's
import contract enforces them): cli, flywheel, export, evals, devstack, gateway (the doors), engine (the agent
step), catalog, tools (vision, search, fetch, ocr, mcp: one Celery queue each), model, index, web, store, common."""
