"""The facerec shared plumbing: CLI, server bootstrap, errors, images, assets."""
