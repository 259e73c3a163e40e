"""The live side: the reference receiver, its capture log and the HTTP replayer (docs/http.md)."""
