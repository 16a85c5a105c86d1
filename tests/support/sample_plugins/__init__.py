"""Small plugin packages for the plugin tests: a working one and each way one can be wrong."""
