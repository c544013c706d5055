"""The facerec application: the `facerec` command, the demo, eval, and the supervisor of the services."""
