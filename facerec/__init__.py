"""The shared ground of every service: errors, status codes, images, batching, settings, server bootstrap, security, metrics, assets, channels, stubs."""
