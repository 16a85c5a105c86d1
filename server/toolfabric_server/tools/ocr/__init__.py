"""The `ocr` tool service: Tesseract reads the text in any image of a trajectory.

A plugin (toolfabric_server.tools.plugins) rather than a built-in: it is the worked example of adding a tool service
without editing the fabric — `plugin.PLUGIN` is named by the `toolfabric.tools` entry point.
"""
