"""The HTTP/JSON API and the web page in front of the gallery."""
