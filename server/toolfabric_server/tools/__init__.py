"""The tool services (one Celery queue each) and the plugin loader: the layer below the engine."""
