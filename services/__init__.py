"""Server-side services of toolfabric: shared plumbing, the model service and the tool workers."""
